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
raises, so a learner can run it at any time. Its hidden tests are kept in the instructor source only,
and they are declarations, not asserts run next to the learner's code: each ``expect(call(...), ...)``
names a learner function, the inputs to call it on, and what must come back (usually the output of the
library's own function on those inputs, computed by the grader). The hidden tests use only their own
imports, never the notebook's variables, because the grader runs them in its own process.

Grading trusts nothing the student's process returns (PrairieLearn's model). For each submission the
grader starts a kernel isolated by `minivid.sandbox` (its own namespaces, user `nobody`, no network, none
of the grader's files; see there for what a machine without namespaces gets instead) and runs the
notebook's setup cells and the learner's answer cells in it. For each question it sends the calls, with
their inputs as plain data, and gets back the outputs as plain data: numbers, and numpy arrays rebuilt
from bytes after their dtype, shape and length are checked. Every comparison then happens in the
grader's own process, with its own torch and numpy. A question has a hard wall-clock limit: past it the
kernel and everything it started are killed, and a fresh kernel replays the cells that ran before the
next question. The grade sheet and the feedback are written at the end, by the grader alone, each file
atomically.
"""

from __future__ import annotations

import base64
import copy
import csv
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n.*?^[ \t]*### END SOLUTION[^\n]*(\n|$)", re.M | re.S)
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[^\n]*\n.*?^[ \t]*### END HIDDEN TESTS[^\n]*(\n|$)", re.M | re.S)
MAX_MESSAGE = 400  # characters of an error kept in feedback
MAX_SUBMISSION_BYTES = 20 * 2**20  # a notebook of answer cells is kilobytes; anything this big is not graded
RESULTS_MIME = "application/vnd.minivid.results+json"  # how the kernel sends the outputs of the grader's calls
ARRAY_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
MAX_ELEMENTS = 2**26  # per array that crosses from a kernel
MAX_DEPTH = 8  # nesting of tuples in an output


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
# hidden tests: which learner function to call, on which inputs, and what must come back
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotebookObject:
    """An object the notebook made (a model, say), passed by name: it cannot travel as data."""
    name: str
    record_calls: bool = False  # a module: record the shape of its first input at every call


@dataclass(frozen=True)
class SeededGenerator:
    """A `torch.Generator` seeded with `seed`, made where the call runs."""
    seed: int


@dataclass
class Call:
    function: str  # the learner's function, by name
    args: tuple
    kwargs: dict
    backward: object = None  # if given: output.backward(backward), and the inputs' gradients come back too

    def __str__(self):
        def short(value):
            if isinstance(value, NotebookObject):
                return value.name
            if isinstance(value, SeededGenerator):
                return f"generator(seed {value.seed})"
            if hasattr(value, "shape"):
                return f"tensor{list(value.shape)}"
            return repr(value)

        parts = [short(a) for a in self.args] + [f"{k}={short(v)}" for k, v in self.kwargs.items()]
        return f"{self.function}({', '.join(parts)})"


def call(function: str, *args, backward=None, **kwargs) -> Call:
    """The learner's function `function` called on `args` and `kwargs` (tensors, numbers, `notebook(...)`, `generator(...)`)."""
    if not isinstance(function, str) or not function.isidentifier():
        raise TypeError(f"call() names the learner's function as a string, e.g. call(\"q_sample\", ...), not {function!r}")
    return Call(function, args, kwargs, backward)


def notebook(name: str, record_calls: bool = False) -> NotebookObject:
    """Pass the notebook's own `name` (e.g. its model). With `record_calls`, see the shape of each input it gets."""
    return NotebookObject(name, record_calls)


def generator(seed: int) -> SeededGenerator:
    """Pass a `torch.Generator().manual_seed(seed)`."""
    return SeededGenerator(seed)


@dataclass
class Case:
    """One hidden test: a call and what must come back from it (see `expect`)."""
    call: Call
    equals: object = None
    grads: tuple | None = None
    satisfies: Callable | None = None
    calls: Callable | None = None
    raises: str | None = None
    atol: float = 1e-6
    rtol: float = 1e-5
    message: str = ""


_collected: list | None = None  # while the grader reads hidden tests, expect() records cases here


def expect(call: Call, *, equals=None, grads=None, satisfies=None, calls=None, raises=None,
           atol: float = 1e-6, rtol: float = 1e-5, message: str = "") -> None:
    """A hidden test: `call` must return `equals` (same shape, values within atol/rtol; tuples item by item).

    grads:     with `call(..., backward=g)`: the expected gradients of the call's tensor inputs that require
               grad, in order; None means no gradient may reach that input.
    satisfies: a function that asserts properties of the output (given as torch tensors), for random answers.
    calls:     a function that asserts on the list of input shapes a `notebook(name, record_calls=True)` module saw.
    raises:    the exception (class or name) the call must raise.
    message:   what to tell the learner when the values are wrong.

    Run in a notebook, it checks at once (and raises AssertionError); the grader instead records it and makes
    the call in the student's kernel, comparing in its own process.
    """
    if not isinstance(call, Call):
        raise TypeError(f"expect() takes call(\"function\", *inputs), not {type(call).__name__}")
    if equals is None and grads is None and satisfies is None and calls is None and raises is None:
        raise ValueError(f"expect({call}) checks nothing: give equals=, grads=, satisfies=, calls= or raises=")
    case = Case(call, equals, grads, satisfies, calls, getattr(raises, "__name__", raises), atol, rtol, message)
    if _collected is not None:
        _collected.append(case)
        return
    request = json.loads(json.dumps(encode_call(call)))  # the same plain data the grader would send...
    result = json.loads(json.dumps(run_call(request, _notebook_namespace())))  # ...and get back
    problem = judge(case, result)
    if problem:
        raise AssertionError(problem)


def _notebook_namespace() -> dict:
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        shell = None
    return shell.user_ns if shell is not None else sys.modules["__main__"].__dict__


def hidden_tests(source_nb) -> dict[str, list[Case]]:
    """{grade_id: cases} of every auto-graded test cell, from running its hidden tests here with expect() recording."""
    global _collected
    tests = {}
    for cell in source_nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        gid = meta["grade_id"]
        code = "".join(m.group(0) for m in HIDDEN.finditer(cell.source))
        _collected = []
        try:
            exec(compile(code, f"<hidden tests of {gid}>", "exec"), {"__name__": "__hidden_tests__"})
        except Exception as exc:
            raise ValueError(f"the hidden tests of {gid} do not run on their own: {type(exc).__name__}: {exc} "
                             "(they may use only their own imports, not the notebook's variables)") from exc
        finally:
            cases, _collected = _collected, None
        if not cases:
            raise ValueError(f"the hidden tests of {gid} declare no expect(call(...), ...): nothing to grade")
        tests[gid] = cases
    return tests


# --------------------------------------------------------------------------------------------
# plain data across the boundary
# --------------------------------------------------------------------------------------------


def encode(value):
    """A Python value as JSON-able plain data: tensors and arrays as bytes with dtype and shape; tuples as lists."""
    import numpy as np

    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}  # JSON has no inf or nan
    if isinstance(value, (tuple, list)):
        return {"list": [encode(v) for v in value]}
    if isinstance(value, NotebookObject):
        return {"notebook": value.name, "record_calls": value.record_calls}
    if isinstance(value, SeededGenerator):
        return {"generator": int(value.seed)}
    requires_grad = False
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        requires_grad = bool(value.requires_grad)
        value = value.detach().cpu()
        value = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.name not in ARRAY_DTYPES:
            raise TypeError(f"arrays of {array.dtype} cannot be graded")
        return {"array": {"dtype": array.dtype.name, "shape": list(array.shape), "requires_grad": requires_grad,
                          "data": base64.b64encode(array.tobytes()).decode("ascii")}}
    raise TypeError(f"returned a {type(value).__name__}, not a tensor, array, number or tuple of them")


def _array(body: dict):
    """A numpy array rebuilt from bytes, after checking that dtype, shape and length agree."""
    import numpy as np

    dtype, shape, data = body.get("dtype"), body.get("shape"), body.get("data")
    if dtype not in ARRAY_DTYPES or not isinstance(data, str) or not isinstance(shape, list) or len(shape) > 8:
        raise ValueError("malformed array")
    if not all(type(n) is int and n >= 0 for n in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise ValueError(f"an array of shape {shape} is not accepted")
    raw = base64.b64decode(data, validate=True)
    if len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
        raise ValueError(f"{len(raw)} bytes do not make an array of {dtype} shaped {shape}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def decode(data, depth: int = 0):
    """Plain data from a kernel as Python values: None, bool, int, float, str, numpy arrays and lists of them. Strict."""
    if data is None or type(data) in (bool, int, str):
        return data
    if depth < MAX_DEPTH and isinstance(data, dict) and len(data) == 1:
        if isinstance(data.get("float"), str):
            return float(data["float"])
        if isinstance(data.get("list"), list):
            return [decode(v, depth + 1) for v in data["list"]]
        if isinstance(data.get("array"), dict):
            return _array(data["array"])
    raise ValueError(f"not plain data: {str(data)[:80]}")


def encode_call(c: Call) -> dict:
    return {"function": c.function, "args": [encode(a) for a in c.args],
            "kwargs": {k: encode(v) for k, v in c.kwargs.items()},
            "backward": None if c.backward is None else encode(c.backward)}


# --------------------------------------------------------------------------------------------
# making the calls: in the student's kernel (or in the instructor's notebook)
# --------------------------------------------------------------------------------------------


def run_call(request: dict, namespace: dict) -> dict:
    """Call the learner's function on the inputs in `request`; return plain data: output, gradients, or the error."""
    import torch

    function = namespace.get(request["function"])
    if not callable(function):
        return {"error": {"type": "NameError", "bases": ["NameError"],
                          "message": f"name {request['function']!r} is not defined"}}
    shapes, hooks = [], []

    def argument(data):
        if isinstance(data, dict) and "notebook" in data:
            obj = namespace.get(data["notebook"])
            if data.get("record_calls") and isinstance(obj, torch.nn.Module):
                hooks.append(obj.register_forward_pre_hook(lambda module, inputs: shapes.append(list(inputs[0].shape))))
            return obj
        if isinstance(data, dict) and "generator" in data:
            return torch.Generator().manual_seed(data["generator"])
        if isinstance(data, dict) and "array" in data:
            tensor = torch.from_numpy(_array(data["array"]))
            return tensor.requires_grad_() if data["array"].get("requires_grad") else tensor
        if isinstance(data, dict) and "list" in data:
            return [argument(v) for v in data["list"]]
        return decode(data)

    try:
        args = [argument(a) for a in request["args"]]
        kwargs = {k: argument(v) for k, v in request["kwargs"].items()}
        output = function(*args, **kwargs)
        result = {"output": encode(output)}
        if request.get("backward") is not None:
            output.backward(argument(request["backward"]))
            result["grads"] = encode([a.grad for a in args if isinstance(a, torch.Tensor) and a.requires_grad])
        if hooks:
            result["calls"] = encode(shapes)
        return result
    except BaseException as exc:  # KeyboardInterrupt and SystemExit too: they are answers, reported as such
        return {"error": {"type": type(exc).__name__, "bases": [c.__name__ for c in type(exc).__mro__],
                          "message": str(exc)[:MAX_MESSAGE]}}
    finally:
        for hook in hooks:
            hook.remove()


def answer(requests: str) -> None:
    """Run in the student's kernel by the grader: make its calls and publish the outputs (never a verdict)."""
    from IPython import get_ipython
    from IPython.display import publish_display_data

    namespace = get_ipython().user_ns
    publish_display_data({RESULTS_MIME: {"results": [run_call(r, namespace) for r in json.loads(requests)]}})


# --------------------------------------------------------------------------------------------
# judging, in the grader's process
# --------------------------------------------------------------------------------------------


def _plain(value):
    """The instructor's expected value in the same form as decoded data (numpy arrays, lists, ints)."""
    return decode(json.loads(json.dumps(encode(value))))


def _as_torch(value):
    import torch

    if isinstance(value, list):
        return [_as_torch(v) for v in value]
    return torch.from_numpy(value) if hasattr(value, "dtype") else value


def compare(got, want, atol: float, rtol: float, message: str = "") -> str | None:
    """What is wrong with `got` (decoded data) against `want` (plain too), or None. numpy, in this process."""
    import numpy as np

    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"expected a tuple of {len(want)} items, got {_kind(got)}"
        for i, (g, w) in enumerate(zip(got, want)):
            problem = compare(g, w, atol, rtol, message)
            if problem:
                return f"item {i}: {problem}"
        return None
    try:
        got = np.asarray(got)
        if got.dtype.kind not in "biuf":
            raise TypeError
    except (TypeError, ValueError):
        return f"expected a tensor or number, got {_kind(got)}"
    want = np.asarray(want)
    if got.shape != want.shape:
        return f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    if want.dtype.kind == "f":
        same = np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol)
    else:
        same = np.array_equal(got, want)
    if same:
        return None
    finite = np.isfinite(got.astype(np.float64)) & np.isfinite(want.astype(np.float64))
    worst = np.abs(got.astype(np.float64) - want)[finite].max(initial=0.0)
    return f"{message or 'values differ from the reference'} (largest difference {worst:.3g})"


def _kind(value) -> str:
    if isinstance(value, list):
        return f"a tuple of {len(value)}"
    return "None" if value is None else type(value).__name__


def _explain(error: dict) -> str:
    name, text = error.get("type", "Exception"), error.get("message", "")
    if name == "NotImplementedError":
        return "not answered (the function still raises NotImplementedError)"
    if name == "NameError":
        return f"NameError: {text} (was a function renamed, or an answer cell deleted?)"
    if name == "KeyboardInterrupt":
        return "KeyboardInterrupt raised by the code itself (not the time limit)"
    return f"{name}: {text}"


def judge(case: Case, result) -> str | None:
    """What is wrong with one call's result (plain data from the kernel), or None if it passes."""
    import numpy as np

    what = str(case.call)
    if not isinstance(result, dict):
        return f"{what}: no result came back"
    error = result.get("error")
    if case.raises is not None:
        if isinstance(error, dict) and case.raises in error.get("bases", []):
            return None
        return f"{what} should raise {case.raises}" + (f", but raised {_explain(error)}" if isinstance(error, dict) else "")
    if error is not None:
        return f"{what}: {_explain(error) if isinstance(error, dict) else 'failed'}"[:MAX_MESSAGE]
    try:
        output = decode(result.get("output"))
        if case.equals is not None:
            problem = compare(output, _plain(case.equals), case.atol, case.rtol, case.message)
            if problem:
                return f"{what}: {problem}"
        if case.grads is not None:
            grads = decode(result.get("grads"))
            if not isinstance(grads, list) or len(grads) != len(case.grads):
                return f"{what}: the gradients did not come back"
            for i, (got, want) in enumerate(zip(grads, case.grads)):
                if want is None:
                    if got is not None and np.any(np.asarray(got) != 0):
                        return f"{what}: {case.message or f'no gradient should reach input {i + 1}'}"
                elif got is None:
                    return f"{what}: {case.message or f'no gradient reached input {i + 1}'}"
                elif problem := compare(got, _plain(want), case.atol, case.rtol, case.message):
                    return f"{what}: gradient of input {i + 1}: {problem}"
        if case.satisfies is not None:
            case.satisfies(_as_torch(output))
        if case.calls is not None:
            calls = decode(result.get("calls"))
            case.calls([tuple(int(n) for n in shape) for shape in calls] if isinstance(calls, list) else [])
    except AssertionError as exc:
        return f"{what}: {exc}"[:MAX_MESSAGE]
    except Exception as exc:  # malformed data, or an output the checks cannot read
        return f"{what}: the answer could not be checked ({type(exc).__name__}: {exc})"[:MAX_MESSAGE]
    return None


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
        size = path.stat().st_size
        if size == 0:
            return None, "empty file: nothing was submitted"
        if size > MAX_SUBMISSION_BYTES:
            return None, f"the file is {size / 2**20:.0f} MB, more than a notebook of answers can be"
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:
        return None, f"not a readable notebook ({type(exc).__name__}: {str(exc)[:120]})"
    if not nb.cells:
        return None, "the notebook has no cells"
    submitted = nb.metadata.get("minivid", {}).get("exercise")
    if submitted is not None and submitted != exercise:
        return None, f"this is exercise {submitted!r}, not {exercise!r}"
    return nb, None


@dataclass
class Step:
    """One thing the grader does in the kernel: run a cell ("setup" or "answer"), or ask a "question"."""
    kind: str
    grade_id: str
    source: str = ""


def _plan(source_nb, submission) -> tuple[list[Step], list[str]]:
    """The steps for one submission, in notebook order up to the last auto-graded question; and answers missing.

    Setup cells come from the instructor notebook, answer cells from the submission (by grade_id); test
    cells never run in the kernel: each becomes a question, asked with its hidden tests' calls.
    """
    answers = {nbgrader_meta(c).get("grade_id"): c for c in submission.cells if nbgrader_meta(c).get("solution")}
    steps, missing = [], []
    for index, cell in enumerate(source_nb.cells):
        meta = nbgrader_meta(cell)
        gid = meta.get("grade_id", f"cell {index}")
        if meta.get("solution"):
            if gid not in answers:
                missing.append(gid)
            elif cell.cell_type == "code":
                steps.append(Step("answer", gid, answers[gid].source))
        elif cell.cell_type == "code":
            steps.append(Step("question" if meta.get("grade") else "setup", gid, cell.source))
    last = max((i for i, s in enumerate(steps) if s.kind == "question"), default=-1)
    return steps[: last + 1], missing


def _ask(kernel, cases: list[Case], timeout: float) -> str | None:
    """Make one question's calls in the kernel and judge the outputs here; None if every case passes."""
    requests = json.dumps([encode_call(case.call) for case in cases])
    code = f"__import__('minivid.course', fromlist=['answer']).answer({requests!r})"
    outcome = kernel.execute(code, timeout, mime=RESULTS_MIME)
    if outcome.status in ("timeout", "died"):
        return _stopped(outcome.status, timeout)
    results = outcome.displays[-1].get("results") if outcome.displays and isinstance(outcome.displays[-1], dict) else None
    if not isinstance(results, list) or len(results) != len(cases):
        reason = f" ({outcome.error[0]}: {outcome.error[1]})" if outcome.error else ""
        return f"no answers came back from the kernel{reason}"[:MAX_MESSAGE]
    for case, result in zip(cases, results):
        problem = judge(case, result)
        if problem:
            return problem
    return None


def _stopped(status: str, timeout: float) -> str:
    if status == "timeout":
        return f"stopped at the time limit of {timeout:g} s (an infinite loop, or far too slow?)"
    return "the Python kernel died while running this (it crashed or exited); a fresh one ran the next question"


def _run_steps(steps: list[Step], tests: dict, folder: Path, timeout: float, verdicts: dict) -> None:
    """Run `steps` in an isolated kernel in `folder`; verdicts[question grade_id] = what went wrong, or None."""
    from minivid.sandbox import Kernel

    ran, failed_answers = [], []
    with Kernel(folder) as kernel:
        for step in steps:
            if not kernel.alive():  # killed at a time limit, or died: a fresh kernel replays what ran before
                kernel.start()
                for source in ran:
                    if kernel.execute(source, timeout).status in ("timeout", "died"):
                        kernel.start()
                        break
            if step.kind == "question":
                problem = _ask(kernel, tests[step.grade_id], timeout)
                if problem and failed_answers:
                    problem = f"{'; '.join(failed_answers)}; then {problem}"
                verdicts[step.grade_id], failed_answers = problem, []
                continue
            outcome = kernel.execute(step.source, timeout)
            if outcome.status == "ok":
                ran.append(step.source)
            elif step.kind == "answer":
                reason = _stopped(outcome.status, timeout) if outcome.error is None else ": ".join(outcome.error)
                failed_answers.append(f"answer cell {step.grade_id} failed ({reason})")


def grade_one(path, source_nb, exercise: str, timeout: float = 60, tests: dict | None = None) -> dict:
    """Score one submission: {'student', 'points': {grade_id: points or None}, 'messages', 'status', 'seconds'}."""
    path = Path(path)
    start = time.perf_counter()
    items = questions(source_nb)
    tests = hidden_tests(source_nb) if tests is None else tests
    result = {"student": path.stem, "file": path.name, "points": {}, "messages": {}, "status": "graded"}
    nb, problem = _read_submission(path, exercise)
    if nb is None:
        result["status"] = problem
        result["points"] = {q["grade_id"]: (None if q["manual"] else 0.0) for q in items}
        result["seconds"] = time.perf_counter() - start
        return result
    steps, missing = _plan(source_nb, nb)
    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="minivid-grade-") as tmp:
        try:
            _run_steps(steps, tests, Path(tmp), timeout, verdicts)
        except Exception as exc:  # e.g. no kernel could start: the questions not reached score 0, with the reason
            traceback.print_exc()
            for q in items:
                verdicts.setdefault(q["grade_id"], f"could not run the notebook: {type(exc).__name__}: {exc}")
    for q in items:
        gid = q["grade_id"]
        if q["manual"]:
            result["points"][gid] = None  # graded by a person, with the rubric in the instructor notebook
            result["messages"][gid] = "graded by hand" + (" (answer cell missing)" if gid in missing else "")
            continue
        problem = verdicts.get(gid, "not graded (the grader did not reach this question)")
        result["points"][gid] = 0.0 if problem else q["points"]
        result["messages"][gid] = problem or "passed"
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


def grade_sheet(results: list[dict], items: list[dict]) -> str:
    """The CSV: a row per student with points per question, the auto-graded total and maximum, and a status."""
    auto = [q for q in items if not q["manual"]]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student", "file", *(q["grade_id"] for q in items), "auto_total", "auto_max", "status"])
    for r in results:
        cells = ["" if r["points"].get(q["grade_id"]) is None else f"{r['points'][q['grade_id']]:g}" for q in items]
        total = sum(r["points"].get(q["grade_id"]) or 0 for q in auto)
        writer.writerow([r["student"], r["file"], *cells, f"{total:g}", f"{sum(q['points'] for q in auto):g}", r["status"]])
    return out.getvalue()


def write_atomically(path, text: str) -> None:
    """Write `text` to `path` through a new file renamed into place: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def grade(submissions, exercise: str, out="grades.csv", feedback="feedback", solutions="solutions", timeout: float = 60,
          progress: bool = True) -> list[dict]:
    """Grade every file in `submissions` (one per student) against solutions/EXERCISE.ipynb.

    The grade sheet `out` and the files in `feedback` are written once every submission is graded; a
    submission the grader cannot handle still gets a row, with the reason as its status.
    """
    from tqdm.auto import tqdm

    source_path = Path(solutions) / f"{exercise}.ipynb"
    if not source_path.is_file():
        names = sorted(p.stem for p in Path(solutions).glob("*.ipynb"))
        raise FileNotFoundError(f"no instructor notebook {source_path}; exercises: {names}")
    source_nb = nbformat.read(source_path, as_version=4)
    items, tests = questions(source_nb), hidden_tests(source_nb)
    files = sorted(p for p in Path(submissions).iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no submissions in {submissions}/")
    results = []
    for path in tqdm(files, desc=f"grading {exercise}", disable=not progress):
        start = time.perf_counter()
        try:
            results.append(grade_one(path, source_nb, exercise, timeout, tests))
        except Exception as exc:  # a bug of the grader's own must not cost the class its grade sheet
            traceback.print_exc()
            results.append({"student": path.stem, "file": path.name, "messages": {}, "seconds": time.perf_counter() - start,
                            "points": {q["grade_id"]: (None if q["manual"] else 0.0) for q in items},
                            "status": f"could not be graded: {type(exc).__name__}: {exc}"[:MAX_MESSAGE]})
    for r in results:
        write_atomically(Path(feedback) / f"{r['student']}.md", feedback_text(r, items, exercise))
    write_atomically(out, grade_sheet(results, items))
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
    from minivid import sandbox

    print(f"isolation: {sandbox.mode()} (see minivid/sandbox.py for what it protects)")
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
