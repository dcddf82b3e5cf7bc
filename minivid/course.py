"""The course kit: learner exercises generated from instructor notebooks, instant checks, and an autograder.

    minivid course generate                      solutions/*.ipynb -> exercises/*.ipynb (never edit those by hand)
    minivid course check                         fails if exercises/ is out of step with solutions/
    minivid course grade SUBMISSIONS --assignment 01_forward_process --out grades.csv --feedback feedback/

Notebooks use nbgrader's conventions, so an instructor can take them into nbgrader unchanged:

* cell metadata ``{"nbgrader": {"grade_id", "solution", "grade", "points", "locked", "task", "schema_version": 3}}``;
* ``### BEGIN SOLUTION`` / ``### END SOLUTION`` around reference answers (code cells become
  ``# YOUR CODE HERE`` + ``raise NotImplementedError()``, markdown cells ``YOUR ANSWER HERE``);
* ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` around the tests that decide the grade.

Each graded test cell starts with a visible check (`check(...)`) that prints feedback and never
raises, so a learner can run it at any time; the hidden tests after it are kept in the instructor
source only. The grader never trusts a submission's test cells: it takes the instructor notebook,
puts the learner's answer cells (matched by ``grade_id``) into it, and runs it in a fresh kernel,
cell by cell, with a time limit per cell. A question scores its points when its test cell runs
without error.
"""

from __future__ import annotations

import copy
import csv
import re
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import nbformat

SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n.*?^[ \t]*### END SOLUTION[^\n]*(\n|$)", re.M | re.S)
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[^\n]*\n.*?^[ \t]*### END HIDDEN TESTS[^\n]*(\n|$)", re.M | re.S)
MAX_MESSAGE = 400  # characters of an error kept in feedback
# Run before each graded test cell: restores the library modules the hidden tests compare against,
# in case an answer cell replaced their functions.
GRADER_PREAMBLE = (
    "import importlib as _grader_importlib, sys as _grader_sys\n"
    "for _grader_name in ('minivid.diffusion', 'minivid.schedules', 'minivid.autoregressive', 'minivid.course'):\n"
    "    if _grader_name in _grader_sys.modules:\n"
    "        _grader_importlib.reload(_grader_sys.modules[_grader_name])\n"
)


# --------------------------------------------------------------------------------------------
# visible checks (what learners run)
# --------------------------------------------------------------------------------------------


def check(description: str, test) -> None:
    """Run `test()` (a function that asserts); print [ok], what went wrong, or "not answered yet". Never raises."""
    try:
        test()
    except NotImplementedError:
        print(f"[ ] {description}: not answered yet")
    except Exception as exc:  # a learner's bug: say what it was, keep the notebook running
        print(f"[x] {description}: {type(exc).__name__}: {str(exc)[:MAX_MESSAGE]}")
    else:
        print(f"[ok] {description}")


# --------------------------------------------------------------------------------------------
# learner versions
# --------------------------------------------------------------------------------------------


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def strip_solutions(source: str, markdown: bool = False) -> str:
    """Replace every solution region by the learner's placeholder, keeping its indentation."""
    def placeholder(match):
        indent = match.group(1)
        if markdown:
            return f"{indent}YOUR ANSWER HERE\n"
        return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()\n"

    return SOLUTION.sub(placeholder, source).rstrip("\n")


def learner_version(nb) -> nbformat.NotebookNode:
    """The exercise a learner receives: solutions and hidden tests removed, outputs cleared."""
    out = copy.deepcopy(nb)
    out.metadata["language_info"] = {"name": "python"}  # not the instructor's Python version: exercises stay in step
    for cell in out.cells:
        markdown = cell.cell_type == "markdown"
        cell.source = strip_solutions(HIDDEN.sub("", cell.source), markdown=markdown)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.get("metadata", {}).pop("execution", None)
    return out


def generate(solutions="solutions", exercises="exercises") -> list[Path]:
    """Write exercises/NAME.ipynb for every solutions/NAME.ipynb; returns the paths written."""
    solutions, exercises = Path(solutions), Path(exercises)
    sources = sorted(solutions.glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no instructor notebooks in {solutions}/")
    exercises.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        target = exercises / path.name
        nbformat.write(learner_version(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def out_of_step(solutions="solutions", exercises="exercises") -> list[str]:
    """Names of exercises that differ from what `generate` would write (missing ones included)."""
    stale = []
    for path in sorted(Path(solutions).glob("*.ipynb")):
        expected = nbformat.writes(learner_version(nbformat.read(path, as_version=4)))
        target = Path(exercises) / path.name
        if not target.exists() or target.read_text().rstrip("\n") != expected.rstrip("\n"):
            stale.append(path.name)
    extra = {p.name for p in Path(exercises).glob("*.ipynb")} - {p.name for p in Path(solutions).glob("*.ipynb")}
    return stale + sorted(extra)


# --------------------------------------------------------------------------------------------
# the autograder
# --------------------------------------------------------------------------------------------


def questions(source_nb) -> list[dict]:
    """The graded items of an instructor notebook: grade_id, points, and whether a person grades it."""
    items = []
    for cell in source_nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade"):
            items.append({"grade_id": meta["grade_id"], "points": float(meta.get("points", 0)),
                          "manual": cell.cell_type == "markdown" or meta.get("solution", False)})
    return items


def _read_submission(path: Path, exercise: str):
    """The submission as a notebook, or a message saying why it cannot be graded."""
    try:
        if path.stat().st_size == 0:
            return None, "empty file: nothing was submitted"
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:
        return None, f"not a readable notebook ({type(exc).__name__}: {str(exc)[:120]})"
    if not nb.cells:
        return None, "the notebook has no cells"
    submitted = nb.metadata.get("minivid", {}).get("exercise")
    if submitted is not None and submitted != exercise:
        return None, f"this is exercise {submitted!r}, not {exercise!r}"
    return nb, None


def _graded_notebook(source_nb, submission):
    """The instructor notebook with the learner's answer cells (by grade_id) put in; and the ids not found."""
    answers = {nbgrader_meta(c).get("grade_id"): c for c in submission.cells if nbgrader_meta(c).get("solution")}
    graded, missing = copy.deepcopy(source_nb), []
    for cell in graded.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution"):
            answer = answers.get(meta["grade_id"])
            if answer is None:
                missing.append(meta["grade_id"])
                cell.source = strip_solutions(cell.source, markdown=cell.cell_type == "markdown")
            else:
                cell.source = answer.source
        if cell.cell_type == "code":
            cell.outputs = []
    return graded, missing


def _error_message(exc: Exception, cell, timeout: float) -> str:
    name = type(exc).__name__
    for output in reversed(cell.get("outputs", [])):
        if output.get("output_type") == "error":
            name, value = output.get("ename", name), output.get("evalue", "")
            break
    else:
        value = str(exc)
    if "Timeout" in type(exc).__name__ or name == "KeyboardInterrupt":
        return f"stopped at the time limit of {timeout:g} s per cell (an infinite loop, or far too slow?)"
    if name == "NotImplementedError":
        return "not answered (the function still raises NotImplementedError)"
    if name == "NameError":
        return f"NameError: {value} (was a function renamed, or an answer cell deleted?)"[:MAX_MESSAGE]
    if name == "DeadKernelError" or "dead" in value.lower():
        return "the Python kernel died while running this cell (it crashed or exited)"
    return f"{name}: {value or 'a hidden test failed'}"[:MAX_MESSAGE]


def _run(graded, timeout: float, workdir: Path) -> dict[int, str]:
    """Execute cell by cell in a fresh kernel; returns {cell index: error message} for failed cells."""
    from nbclient import NotebookClient

    client = NotebookClient(graded, timeout=timeout, kernel_name="python3", allow_errors=False,
                            interrupt_on_timeout=True, resources={"metadata": {"path": str(workdir)}})
    errors = {}
    with client.setup_kernel():
        for index, cell in enumerate(graded.cells):
            if cell.cell_type != "code":
                continue
            meta = nbgrader_meta(cell)
            if meta.get("grade") and not meta.get("solution"):
                cell.source = GRADER_PREAMBLE + cell.source
            try:
                client.execute_cell(cell, index)
            except Exception as exc:  # the learner's error, a timeout, or a dead kernel: recorded, never raised
                errors[index] = _error_message(exc, cell, timeout)
            for output in cell.get("outputs", []):  # keep no megabytes of printing in memory
                if output.get("output_type") == "stream" and len(output.get("text", "")) > 10_000:
                    output["text"] = output["text"][:10_000] + "\n[... output truncated by the grader]"
    return errors


def grade_one(path, source_nb, exercise: str, timeout: float = 60) -> dict:
    """Score one submission: {'student', 'points': {grade_id: points or None}, 'messages', 'seconds'}."""
    path = Path(path)
    start = time.perf_counter()
    items = questions(source_nb)
    result = {"student": path.stem, "file": path.name, "points": {}, "messages": {}, "status": "graded"}
    nb, problem = _read_submission(path, exercise)
    if nb is None:
        result["status"] = problem
        result["points"] = {q["grade_id"]: (None if q["manual"] else 0.0) for q in items}
        result["seconds"] = time.perf_counter() - start
        return result
    graded, missing = _graded_notebook(source_nb, nb)
    with tempfile.TemporaryDirectory(prefix="minivid-grade-") as tmp:
        try:
            errors = _run(graded, timeout, Path(tmp))
        except Exception as exc:  # e.g. no kernel could start: still a row in the CSV
            errors = {i: f"could not run the notebook: {type(exc).__name__}: {exc}" for i in range(len(graded.cells))}
            traceback.print_exc()
    for index, cell in enumerate(graded.cells):
        meta = nbgrader_meta(cell)
        if not meta.get("grade"):
            continue
        gid = meta["grade_id"]
        if cell.cell_type == "markdown" or meta.get("solution"):
            result["points"][gid] = None  # graded by a person, with the rubric in the instructor notebook
            result["messages"][gid] = "graded by hand" + (" (answer cell missing)" if gid in missing else "")
            continue
        error = errors.get(index)
        result["points"][gid] = 0.0 if error else float(meta.get("points", 0))
        result["messages"][gid] = error or "passed"
    if missing:
        result["status"] = f"answer cells missing: {', '.join(missing)}"
    result["seconds"] = time.perf_counter() - start
    return result


def feedback_text(result: dict, items: list[dict], exercise: str) -> str:
    lines = [f"# Feedback: {exercise}, {result['student']}", "", f"Status: {result['status']}", ""]
    for q in items:
        got = result["points"].get(q["grade_id"])
        score = "to be graded by hand" if got is None else f"{got:g} / {q['points']:g}"
        lines.append(f"- **{q['grade_id']}** ({score}): {result['messages'].get(q['grade_id'], result['status'])}")
    auto = [q for q in items if not q["manual"]]
    total = sum(result["points"].get(q["grade_id"]) or 0 for q in auto)
    lines += ["", f"Auto-graded total: {total:g} / {sum(q['points'] for q in auto):g}", ""]
    return "\n".join(lines)


def grade(submissions, exercise: str, out="grades.csv", feedback="feedback", solutions="solutions", timeout: float = 60,
          progress: bool = True) -> list[dict]:
    """Grade every file in `submissions` (one per student) against solutions/EXERCISE.ipynb."""
    from tqdm.auto import tqdm

    source_path = Path(solutions) / f"{exercise}.ipynb"
    if not source_path.is_file():
        names = sorted(p.stem for p in Path(solutions).glob("*.ipynb"))
        raise FileNotFoundError(f"no instructor notebook {source_path}; exercises: {names}")
    source_nb = nbformat.read(source_path, as_version=4)
    items = questions(source_nb)
    files = sorted(p for p in Path(submissions).iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no submissions in {submissions}/")
    feedback_dir = Path(feedback)
    feedback_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in tqdm(files, desc=f"grading {exercise}", disable=not progress):
        result = grade_one(path, source_nb, exercise, timeout)
        results.append(result)
        (feedback_dir / f"{path.stem}.md").write_text(feedback_text(result, items, exercise))
    auto = [q for q in items if not q["manual"]]
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "file", *(q["grade_id"] for q in items), "auto_total", "auto_max", "status"])
        for r in results:
            cells = ["" if r["points"].get(q["grade_id"]) is None else f"{r['points'][q['grade_id']]:g}" for q in items]
            total = sum(r["points"].get(q["grade_id"]) or 0 for q in auto)
            writer.writerow([r["student"], r["file"], *cells, f"{total:g}", f"{sum(q['points'] for q in auto):g}", r["status"]])
    return results


def run_cli(args) -> int:
    if args.action == "generate":
        for path in generate(args.solutions, args.exercises):
            print(f"wrote {path}")
        return 0
    if args.action == "check":
        stale = out_of_step(args.solutions, args.exercises)
        if stale:
            print(f"out of step with {args.solutions}/: {', '.join(stale)}; run `minivid course generate`")
            return 1
        print(f"{args.exercises}/ is in step with {args.solutions}/")
        return 0
    if not args.submissions or not args.assignment:
        raise ValueError("grade needs a submissions folder and --assignment NAME")
    results = grade(args.submissions, args.assignment, args.out, args.feedback, args.solutions, args.timeout)
    seconds = sorted(r["seconds"] for r in results)
    print(f"graded {len(results)} submissions -> {args.out}, feedback in {args.feedback}/ "
          f"(median {seconds[len(seconds) // 2]:.1f} s per submission)")
    return 0


def copy_exercise_for(student: str, exercise: str, folder, exercises="exercises") -> Path:
    """Hand-out helper: exercises/EXERCISE.ipynb copied to FOLDER/STUDENT.ipynb."""
    target = Path(folder) / f"{student}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(exercises) / f"{exercise}.ipynb", target)
    return target
