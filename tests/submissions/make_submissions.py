"""Writes the broken submissions the autograder tests grade (from the instructor notebook of exercise 01).

    python tests/submissions/make_submissions.py

Each file is one way a real submission goes wrong; tests/test_course.py states the score each must get.
"""

import copy
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "01_forward_process"

WRONG_SHAPE = "def linear_alpha_bar(T=1000, beta_start=1e-4, beta_end=0.02):\n    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, T), 0)[:, None]\n"
LOOP = "def q_sample(x0, t, eps, alpha_bar):\n    while True:\n        pass\n"
TAMPER = (
    "import minivid.diffusion\n"
    "def q_sample(x0, t, eps, alpha_bar):\n    return x0\n"
    "minivid.diffusion.q_sample = q_sample  # make the reference agree with a wrong answer\n"
    "def check(*args, **kwargs):\n    print('[ok] everything')\n"
)
PRINTS = "def snr(alpha_bar):\n    print('x' * 3_000_000)\n    return alpha_bar / (1 - alpha_bar)\n"
EXCEPTION = "def snr(alpha_bar):\n    return alpha_bar / 0 if isinstance(alpha_bar, int) else 1 / (alpha_bar - alpha_bar).sum().item()\n"
KILLS = "def snr(alpha_bar):\n    import os\n    os._exit(1)\n"


def answer_cells(nb):
    return {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}


def variant(source, **replace):
    nb = copy.deepcopy(source)
    cells = answer_cells(nb)
    for gid, code in replace.items():
        cells[gid].source = code
    return nb


def main():
    solution = nbformat.read(ROOT / "solutions" / "01_forward_process.ipynb", as_version=4)
    for cell in solution.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    OUT.mkdir(exist_ok=True)
    subs = {
        "wrong_shape": variant(solution, q1_alpha_bar=WRONG_SHAPE),
        "infinite_loop": variant(solution, q2_q_sample=LOOP),
        "tampered": variant(solution, q2_q_sample=TAMPER),
        "prints_megabytes": variant(solution, q3_snr=PRINTS),
        "raises": variant(solution, q3_snr=EXCEPTION),
        "kills_kernel": variant(solution, q3_snr=KILLS),
    }
    renamed = variant(solution)
    cell = answer_cells(renamed)["q2_q_sample"]
    cell.source = cell.source.replace("def q_sample(", "def add_noise(")
    subs["renamed"] = renamed
    deleted = copy.deepcopy(solution)  # the q3 answer and every test cell deleted
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "q3_snr"
                     and not c.metadata.get("nbgrader", {}).get("grade")]
    subs["deleted_cells"] = deleted
    other = nbformat.read(ROOT / "exercises" / "03_vector_quantizer.ipynb", as_version=4)
    subs["other_exercise"] = other
    for name, nb in subs.items():
        nbformat.write(nb, OUT / f"{name}.ipynb")
    (OUT / "not_a_notebook.ipynb").write_text("print('hello')\n")
    (OUT / "empty.ipynb").write_text("")
    print(f"wrote {len(subs) + 2} submissions to {OUT}")


if __name__ == "__main__":
    main()
