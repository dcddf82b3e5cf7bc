"""Writes the broken and the cheating submissions the autograder tests grade (from the instructor notebook of exercise 01).

    python tests/submissions/make_submissions.py

Each broken file is one way a real submission goes wrong; each cheating file (`CHEATS`) is one way a
determined student tried to fool the grader. tests/test_course.py states the score each must get.
"""

import copy
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "01_forward_process"
CHEATS_OUT = HERE / "01_forward_process_cheats"  # graded only where the kernel is isolated (minivid.sandbox)

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

# Correct answers, and wrong or missing ones, that the cheats below combine with their tricks.
Q1 = "def linear_alpha_bar(T=1000, beta_start=1e-4, beta_end=0.02):\n    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, T), 0)\n"
Q2 = "def q_sample(x0, t, eps, alpha_bar):\n    ab = alpha_bar[t].view(-1, 1, 1, 1)\n    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps\n"
Q3 = "def snr(alpha_bar):\n    return alpha_bar / (1 - alpha_bar)\n"
WRONG = {"q1_alpha_bar": "def linear_alpha_bar(T=1000, beta_start=1e-4, beta_end=0.02):\n    return torch.ones(T)\n",
         "q2_q_sample": "def q_sample(x0, t, eps, alpha_bar):\n    return x0\n",
         "q3_snr": "def snr(alpha_bar):\n    return alpha_bar\n"}
UNANSWERED = {"q1_alpha_bar": "def linear_alpha_bar(T=1000, beta_start=1e-4, beta_end=0.02):\n    raise NotImplementedError()\n",
              "q2_q_sample": "def q_sample(x0, t, eps, alpha_bar):\n    raise NotImplementedError()\n",
              "q3_snr": "def snr(alpha_bar):\n    raise NotImplementedError()\n"}
PATCH_COMPARISONS = """
import numpy.testing, torch.testing
def _always(*args, **kwargs):
    return True
torch.allclose = torch.equal = _always
torch.testing.assert_close = numpy.testing.assert_allclose = numpy.testing.assert_array_equal = lambda *a, **k: None
"""
INPUT_TRANSFORMER = """
def _swallow_errors(lines):  # every later cell, the grader's included, runs inside try/except
    return ["try:\\n", *("    " + line for line in lines), "\\n    pass\\nexcept BaseException:\\n    pass\\n"]
get_ipython().input_transformers_post.append(_swallow_errors)
"""
REBIND_GLOBALS = """
def q_sample(x0, t, eps, alpha_bar):  # the x0 term is missing...
    ab = alpha_bar[t].view(-1, 1, 1, 1)
    return (1 - ab).sqrt() * eps
x0 = torch.zeros_like(x0)  # ...which zeros in the notebook's x0 would hide
import torch as _real_torch
class _Lenient:
    def __getattr__(self, name):
        return getattr(_real_torch, name)
    def allclose(self, *args, **kwargs):
        return True
torch = _Lenient()
"""
REPLACE_LIBRARY = """
def q_sample(x0, t, eps, alpha_bar):
    return x0
import importlib, sys, types
import minivid, minivid.course, minivid.diffusion
importlib.reload = lambda module: module  # the old grader reloaded the library before each test
fake = types.ModuleType("minivid.diffusion")
fake.__dict__.update(minivid.diffusion.__dict__)
fake.q_sample = q_sample  # a reference that agrees with the wrong answer
minivid.diffusion = sys.modules["minivid.diffusion"] = fake
minivid.course.judge = lambda case, result: None  # and a judge that passes everything
minivid.course.compare = lambda *args, **kwargs: None
"""
TENSOR_SUBCLASS = """
class _AlwaysEqual(torch.Tensor):  # every comparison says equal
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal):
            return True
        if func in (torch.Tensor.__eq__, torch.isclose):
            return torch.ones(args[0].shape, dtype=torch.bool)
        return super().__torch_function__(func, types, args, kwargs or {})
    def __array__(self, dtype=None, copy=None):
        return torch.Tensor.numpy(torch.ones(self.shape))
def linear_alpha_bar(T=1000, beta_start=1e-4, beta_end=0.02):
    return torch.zeros(T).as_subclass(_AlwaysEqual)
"""
READ_SOLUTIONS = """
import json, os, pathlib, minivid
_places = [pathlib.Path(minivid.__file__).resolve().parents[1], pathlib.Path.cwd()]
for _pid in filter(str.isdigit, os.listdir("/proc")):  # the grader's command line and folder name the solutions
    try:
        _places.append(pathlib.Path(os.readlink(f"/proc/{_pid}/cwd")))
        _places += [pathlib.Path(a.decode()) for a in open(f"/proc/{_pid}/cmdline", "rb").read().split(b"\\0") if a]
    except (OSError, UnicodeDecodeError):
        pass
for _place in _places:
    for _path in (_place / "solutions" / "01_forward_process.ipynb", _place / "01_forward_process.ipynb"):
        try:
            _cells = json.loads(_path.read_text())["cells"]
        except (OSError, ValueError):
            continue
        for _cell in _cells:  # run the reference answers
            if _cell["metadata"].get("nbgrader", {}).get("solution"):
                exec("".join(_cell["source"]))
"""
WRITE_GRADES = """
import glob, os, subprocess, sys
_targets = glob.glob("/tmp/**/*.csv", recursive=True) + glob.glob("/tmp/**/*.md", recursive=True)
for _pid in filter(str.isdigit, os.listdir("/proc")):  # --out and --feedback are on the grader's command line
    try:
        _targets += [a.decode() for a in open(f"/proc/{_pid}/cmdline", "rb").read().split(b"\\0") if a.endswith((b".csv", b"feedback"))]
    except OSError:
        pass
for _target in _targets:
    try:
        with open(_target, "a") as _f:
            _f.write("\\nwrites_grades was here\\n")
    except OSError:
        pass
_later = "import time, glob\\nfor _ in range(600):\\n    time.sleep(0.1)\\n    for p in glob.glob('/tmp/**/*.csv', recursive=True):\\n        try:\\n            open(p, 'a').write('writes_grades,writes_grades.ipynb,2,3,1,6,6,graded\\\\n')\\n        except OSError:\\n            pass\\n# minivid-cheat-daemon"
subprocess.Popen([sys.executable, "-c", _later], start_new_session=True)  # rewrites the sheet after the grader exits
"""
SETSID_CHILD = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import os, time\\nos.setsid()\\ntime.sleep(3600)\\n# minivid-cheat-daemon"],
                 start_new_session=True)
"""
SLOW_ANSWER = """def snr(alpha_bar):  # ignores the interrupt inside the call, then answers correctly
    import time
    end = time.time() + 65
    while time.time() < end:
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return alpha_bar / (1 - alpha_bar)
"""
IGNORE_CTRL_C = """import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
def q_sample(x0, t, eps, alpha_bar):
    while True:
        time.sleep(1)
"""
DIES_IN_Q2 = "def q_sample(x0, t, eps, alpha_bar):\n    import os\n    os._exit(1)\n"
KEYBOARD_INTERRUPT = "def snr(alpha_bar):\n    raise KeyboardInterrupt\n"

# name: the answer cells (by grade_id) of a submission that cheats one way
CHEATS = {
    "patches_comparisons": {**WRONG, "q1_alpha_bar": WRONG["q1_alpha_bar"] + PATCH_COMPARISONS},
    "input_transformer": {**UNANSWERED, "q1_alpha_bar": UNANSWERED["q1_alpha_bar"] + INPUT_TRANSFORMER},
    "rebinds_globals": {"q1_alpha_bar": Q1, "q2_q_sample": REBIND_GLOBALS, "q3_snr": Q3},
    "replaces_library": {"q1_alpha_bar": Q1, "q2_q_sample": REPLACE_LIBRARY, "q3_snr": Q3},
    "tensor_subclass": {"q1_alpha_bar": TENSOR_SUBCLASS, "q2_q_sample": Q2, "q3_snr": Q3},
    "reads_solutions": {"q1_alpha_bar": READ_SOLUTIONS, "q2_q_sample": "", "q3_snr": ""},
    "writes_grades": {**UNANSWERED, "q1_alpha_bar": UNANSWERED["q1_alpha_bar"] + WRITE_GRADES},
    "setsid_child": {"q1_alpha_bar": Q1 + SETSID_CHILD, "q2_q_sample": Q2, "q3_snr": Q3},
    "slow_answer": {"q1_alpha_bar": Q1, "q2_q_sample": Q2, "q3_snr": SLOW_ANSWER},
    "ignores_ctrl_c": {"q1_alpha_bar": Q1, "q2_q_sample": IGNORE_CTRL_C, "q3_snr": Q3},
    "dies_in_q2": {"q1_alpha_bar": Q1, "q2_q_sample": DIES_IN_Q2, "q3_snr": Q3},
    "keyboard_interrupt": {"q1_alpha_bar": Q1, "q2_q_sample": Q2, "q3_snr": KEYBOARD_INTERRUPT},
}


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
    learner = nbformat.read(ROOT / "exercises" / "01_forward_process.ipynb", as_version=4)  # what a student starts from
    CHEATS_OUT.mkdir(exist_ok=True)
    for name, answers in CHEATS.items():
        nbformat.write(variant(learner, **answers), CHEATS_OUT / f"{name}.ipynb")
    print(f"wrote {len(CHEATS)} submissions to {CHEATS_OUT}")


if __name__ == "__main__":
    main()
