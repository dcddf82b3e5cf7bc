"""The course kit: exercises generated from solutions, instant checks, and the autograder."""

import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient

from minivid import cli, course, sandbox

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
SUBMISSIONS = ROOT / "tests" / "submissions"
NAMES = sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))
ISOLATED = pytest.mark.skipif(sandbox.mode() != "namespaces", reason="needs Linux namespaces (run as root)")


def read_csv(path):
    with open(path) as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_there_is_an_exercise_per_topic():
    assert NAMES == ["01_forward_process", "02_ddim_step", "03_vector_quantizer", "04_sampling_kv_cache",
                     "05_noise_schedules", "06_error_accumulation"]


def test_exercises_are_in_step_with_solutions():
    assert course.out_of_step(SOLUTIONS, EXERCISES) == [], "run `minivid course generate`"
    assert cli.main(["course", "check", "--solutions", str(SOLUTIONS), "--exercises", str(EXERCISES)]) == 0


def test_learner_version_hides_answers_and_hidden_tests():
    source = nbformat.read(SOLUTIONS / "01_forward_process.ipynb", as_version=4)
    learner = course.learner_version(source)
    text = "\n".join(c.source for c in learner.cells)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "_ref" not in text
    assert text.count("raise NotImplementedError()") == 3
    assert all(c.outputs == [] for c in learner.cells if c.cell_type == "code")
    assert [course.nbgrader_meta(c) for c in learner.cells] == [course.nbgrader_meta(c) for c in source.cells]
    assert learner.metadata["minivid"]["exercise"] == "01_forward_process"
    md = course.strip_solutions("Answer:\n### BEGIN SOLUTION\nsecret\n### END SOLUTION\n", markdown=True)
    assert md == "Answer:\nYOUR ANSWER HERE"
    code = course.strip_solutions("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n")
    assert code == "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()"


def test_generate_writes_and_detects_drift(tmp_path):
    out = tmp_path / "ex"
    written = course.generate(SOLUTIONS, out)
    assert sorted(p.stem for p in written) == NAMES and course.out_of_step(SOLUTIONS, out) == []
    nb = nbformat.read(out / "02_ddim_step.ipynb", as_version=4)
    nb.cells[0].source += "\nedited by hand"
    nbformat.write(nb, out / "02_ddim_step.ipynb")
    (out / "99_stray.ipynb").write_text("{}")
    assert course.out_of_step(SOLUTIONS, out) == ["02_ddim_step.ipynb", "99_stray.ipynb"]


def test_check_prints_and_never_raises(capsys):
    def unanswered():
        raise NotImplementedError()

    def wrong():
        raise ValueError("one is not two")

    course.check("a", unanswered)
    course.check("b", wrong)
    course.check("c", lambda: None)
    assert capsys.readouterr().out.splitlines() == ["[ ] a: not answered yet", "[x] b: ValueError: one is not two", "[ok] c"]


@pytest.mark.parametrize("name", NAMES)
def test_solution_scores_full_marks_and_exercise_runs_and_scores_zero(name, tmp_path):
    exercise = nbformat.read(EXERCISES / f"{name}.ipynb", as_version=4)
    NotebookClient(exercise, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for c in exercise.cells if c.cell_type == "code" for o in c.outputs)
    assert "not answered yet" in printed  # the visible checks ran and said so, without an error
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copyfile(SOLUTIONS / f"{name}.ipynb", subs / "instructor.ipynb")
    shutil.copyfile(EXERCISES / f"{name}.ipynb", subs / "untouched.ipynb")
    course.grade(subs, name, tmp_path / "g.csv", tmp_path / "fb", SOLUTIONS, timeout=600, progress=False)
    rows = read_csv(tmp_path / "g.csv")
    full = rows["instructor"]
    assert float(full["auto_total"]) == float(full["auto_max"]) > 0, full
    assert float(rows["untouched"]["auto_total"]) == 0, rows["untouched"]
    items = course.questions(nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4))
    for q in items:
        if q["manual"]:
            assert full[q["grade_id"]] == ""  # left for a person
    assert "Auto-graded total" in (tmp_path / "fb" / "instructor.md").read_text()


def grade_q123(folder, out, timeout):
    """Grade a folder of exercise-01 submissions; rows, feedback and results by student."""
    results = course.grade(folder, "01_forward_process", out / "g.csv", out / "fb", SOLUTIONS, timeout=timeout, progress=False)
    rows = read_csv(out / "g.csv")
    scores = {s: tuple(int(float(rows[s][q])) for q in ("q1_tests", "q2_tests", "q3_tests")) for s in rows}
    feedback = {s: (out / "fb" / f"{s}.md").read_text() for s in rows}
    return rows, scores, feedback, {r["student"]: r for r in results}


def test_broken_submissions_get_the_expected_scores(tmp_path):
    rows, got, feedback, _ = grade_q123(SUBMISSIONS / "01_forward_process", tmp_path, timeout=30)
    expected = {  # q1 (2 points), q2 (3), q3 (1)
        "wrong_shape": (0, 3, 1), "infinite_loop": (2, 0, 1), "tampered": (2, 0, 1), "prints_megabytes": (2, 3, 1),
        "raises": (2, 3, 0), "kills_kernel": (2, 3, 0), "renamed": (2, 0, 1), "deleted_cells": (2, 3, 0),
        "other_exercise": (0, 0, 0), "not_a_notebook": (0, 0, 0), "empty": (0, 0, 0),
    }
    assert got == expected
    assert "not a readable notebook" in rows["not_a_notebook"]["status"]
    assert "empty file" in rows["empty"]["status"]
    assert "'03_vector_quantizer'" in rows["other_exercise"]["status"]
    assert "q3_snr" in rows["deleted_cells"]["status"]
    assert "time limit" in feedback["infinite_loop"] and "NameError" in feedback["renamed"]
    assert "shape (1000,)" in feedback["wrong_shape"] and "kernel died" in feedback["kills_kernel"]
    assert max(len(f) for f in feedback.values()) < 5_000  # megabytes of printing never reach the feedback


def test_one_bad_submission_never_stops_the_grade_sheet(tmp_path, monkeypatch):
    subs = tmp_path / "subs"
    subs.mkdir()
    for student in ("ann", "bob", "cat"):
        shutil.copyfile(EXERCISES / "01_forward_process.ipynb", subs / f"{student}.ipynb")

    def grade_one(path, source_nb, exercise, timeout, tests):
        if path.stem == "bob":
            raise RuntimeError("a bug of the grader's own")
        return {"student": path.stem, "file": path.name, "points": {"q1_tests": 2.0, "q2_tests": 3.0, "q3_tests": 0.0},
                "messages": {}, "status": "graded", "seconds": 0.0}

    monkeypatch.setattr(course, "grade_one", grade_one)
    course.grade(subs, "01_forward_process", tmp_path / "g.csv", tmp_path / "fb", SOLUTIONS, progress=False)
    rows = read_csv(tmp_path / "g.csv")
    assert [rows[s]["auto_total"] for s in ("ann", "bob", "cat")] == ["5", "0", "5"]
    assert rows["bob"]["status"] == "could not be graded: RuntimeError: a bug of the grader's own"
    assert sorted(p.name for p in (tmp_path / "fb").iterdir()) == ["ann.md", "bob.md", "cat.md"]  # no temporary files left


def test_grade_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="exercises:"):
        course.grade(tmp_path, "99_nope", solutions=SOLUTIONS, progress=False)
    with pytest.raises(FileNotFoundError, match="no submissions"):
        course.grade(tmp_path, "01_forward_process", solutions=SOLUTIONS, progress=False)
    assert cli.main(["course", "grade"]) == 2  # a clear error, not a traceback


CHEATS = {  # one per way the class tried to fool the old grader; q1 (2 points), q2 (3), q3 (1)
    "patches_comparisons": (0, 0, 0),  # wrong answers, torch.allclose & co. always pass
    "input_transformer": (0, 0, 0),  # no answers, every later cell wrapped in try/except
    "rebinds_globals": (2, 0, 1),  # q2 misses the x0 term and zeroes the notebook's x0; torch swapped for a proxy
    "replaces_library": (2, 0, 1),  # importlib.reload disabled, a wrong minivid.diffusion and minivid.course.judge
    "tensor_subclass": (0, 3, 1),  # q1 returns zeros in a Tensor subclass that says "equal" to everything
    "reads_solutions": (0, 0, 0),  # looks for the instructor notebook through /proc and the package path
    "writes_grades": (0, 0, 0),  # appends to every CSV and feedback file it finds; a daemon rewrites them later
    "setsid_child": (2, 3, 1),  # correct, and leaves a setsid process behind
    "slow_answer": (2, 3, 0),  # q3 ignores the interrupt, answers correctly after 65 s
    "ignores_ctrl_c": (2, 0, 1),  # q2 ignores SIGINT and sleeps for ever
    "dies_in_q2": (2, 0, 1),  # the kernel dies in q2; q3 is still correct
    "keyboard_interrupt": (2, 3, 0),  # q3 raises KeyboardInterrupt at once
}


def cheat_processes():
    return subprocess.run(["pgrep", "-f", "minivid-cheat-daemon"], capture_output=True, text=True).stdout.split()


@ISOLATED
def test_cheating_submissions_get_what_their_answers_deserve(tmp_path):
    leftovers_before = set(Path(tempfile.gettempdir()).glob("minivid-grade-*"))
    timeout = 15
    rows, got, feedback, results = grade_q123(SUBMISSIONS / "01_forward_process_cheats", tmp_path, timeout)
    assert got == CHEATS
    assert "KeyboardInterrupt" in feedback["keyboard_interrupt"] and "stopped at the time limit" not in feedback["keyboard_interrupt"]
    assert "time limit" in feedback["slow_answer"] and "time limit" in feedback["ignores_ctrl_c"]
    assert results["slow_answer"]["seconds"] < 65  # killed at the limit, not waited for
    assert "kernel died" in feedback["dies_in_q2"] and "q3_tests** (1 / 1): passed" in feedback["dies_in_q2"]
    assert "NotImplementedError" in feedback["input_transformer"]
    sheet = (tmp_path / "g.csv").read_text()
    time.sleep(1.5)  # a daemon that outlived its kernel would be rewriting the sheet by now
    assert (tmp_path / "g.csv").read_text() == sheet and "was here" not in sheet
    assert not any("was here" in text for text in feedback.values())
    assert cheat_processes() == []  # setsid children died with their kernel's namespace
    assert set(Path(tempfile.gettempdir()).glob("minivid-grade-*")) == leftovers_before  # no folders, sockets, connection files


def test_fallback_without_namespaces_grades_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "_mode", "process group")
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copyfile(SOLUTIONS / "01_forward_process.ipynb", subs / "instructor.ipynb")
    shutil.copyfile(SUBMISSIONS / "01_forward_process_cheats" / "dies_in_q2.ipynb", subs / "dies_in_q2.ipynb")
    got = grade_q123(subs, tmp_path, timeout=60)[1]
    assert got == {"instructor": (2, 3, 1), "dies_in_q2": CHEATS["dies_in_q2"]}


def test_expect_checks_at_once_in_a_notebook(monkeypatch):
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "halve", lambda x: x / 2, raising=False)
    monkeypatch.setattr(main, "pair", lambda x: (x.sum(), int(x.numel())), raising=False)
    monkeypatch.setattr(main, "picky", lambda n: (_ for _ in ()).throw(ValueError("no")) if n < 0 else n, raising=False)
    x = torch.arange(6.0).view(2, 3).requires_grad_()
    course.expect(course.call("halve", x), equals=x / 2)
    course.expect(course.call("halve", x, backward=torch.ones(2, 3)), grads=(torch.full((2, 3), 0.5),))
    course.expect(course.call("pair", x), equals=(torch.tensor(15.0), 6))
    course.expect(course.call("picky", -1), raises=ValueError)
    course.expect(course.call("picky", 3), satisfies=lambda n: None if n == 3 else 1 / 0)
    with pytest.raises(AssertionError, match=r"halve\(tensor\[2, 3\]\): expected shape \(3, 2\), got \(2, 3\)"):
        course.expect(course.call("halve", x), equals=torch.zeros(3, 2))
    with pytest.raises(AssertionError, match="halving is wrong .largest difference 2.5"):
        course.expect(course.call("halve", x), equals=x, message="halving is wrong")
    with pytest.raises(AssertionError, match="should raise ValueError"):
        course.expect(course.call("picky", 1), raises=ValueError)
    with pytest.raises(AssertionError, match="NameError"):
        course.expect(course.call("no_such_function", 1), equals=1)
    with pytest.raises(ValueError, match="checks nothing"):
        course.expect(course.call("halve", x))
    with pytest.raises(TypeError, match="as a string"):
        course.call(main.halve, x)


def test_data_from_a_kernel_is_checked_before_use():
    good = course.encode(torch.arange(6, dtype=torch.int32).view(2, 3))
    assert course.decode(good).tolist() == [[0, 1, 2], [3, 4, 5]] and course.decode(good).dtype == np.int32
    assert course.decode(course.encode((1.5, None, [True]))) == [1.5, None, [True]]
    assert course.decode(course.encode(torch.tensor(2.0))).shape == ()  # 0-d stays 0-d
    assert course.decode(course.encode(torch.arange(6).view(2, 3).T)).tolist() == [[0, 3], [1, 4], [2, 5]]
    bad = [
        {"array": {**good["array"], "shape": [3, 3]}},  # bytes do not match the shape
        {"array": {**good["array"], "dtype": "object"}},  # not a plain dtype
        {"array": {**good["array"], "shape": [-2, -3]}},
        {"pickle": "gASVAAAA"},  # nothing but lists, numbers, strings and arrays
        [1, 2],  # a bare JSON list is not a tuple
    ]
    for data in bad:
        with pytest.raises(ValueError):
            course.decode(data)
    nested = 1
    for _ in range(course.MAX_DEPTH + 1):
        nested = {"list": [nested]}
    with pytest.raises(ValueError):
        course.decode(nested)


def test_hidden_tests_must_stand_alone():
    nb = nbformat.read(SOLUTIONS / "01_forward_process.ipynb", as_version=4)
    tests = course.hidden_tests(nb)
    assert {gid: len(cases) for gid, cases in tests.items()} == {"q1_tests": 2, "q2_tests": 2, "q3_tests": 1}
    cell = next(c for c in nb.cells if course.nbgrader_meta(c).get("grade_id") == "q3_tests")
    cell.source = cell.source.replace("_ab = torch.linspace(0.99, 0.01, 7)", "_ab = x0")  # a notebook variable
    with pytest.raises(ValueError, match="q3_tests do not run on their own"):
        course.hidden_tests(nb)
