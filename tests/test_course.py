"""The course kit: exercises generated from solutions, instant checks, and the autograder."""

import csv
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from minivid import cli, course

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
NAMES = sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))


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


def test_broken_submissions_get_the_expected_scores(tmp_path):
    course.grade(ROOT / "tests" / "submissions" / "01_forward_process", "01_forward_process", tmp_path / "g.csv",
                 tmp_path / "fb", SOLUTIONS, timeout=30, progress=False)
    rows = read_csv(tmp_path / "g.csv")
    expected = {  # q1 (2 points), q2 (3), q3 (1)
        "wrong_shape": (0, 3, 1), "infinite_loop": (2, 0, 1), "tampered": (2, 0, 1), "prints_megabytes": (2, 3, 1),
        "raises": (2, 3, 0), "kills_kernel": (2, 3, 0), "renamed": (2, 0, 1), "deleted_cells": (2, 3, 0),
        "other_exercise": (0, 0, 0), "not_a_notebook": (0, 0, 0), "empty": (0, 0, 0),
    }
    got = {s: tuple(int(float(rows[s][q])) for q in ("q1_tests", "q2_tests", "q3_tests")) for s in rows}
    assert got == expected
    assert "not a readable notebook" in rows["not_a_notebook"]["status"]
    assert "empty file" in rows["empty"]["status"]
    assert "'03_vector_quantizer'" in rows["other_exercise"]["status"]
    assert "q3_snr" in rows["deleted_cells"]["status"]
    feedback = {s: (tmp_path / "fb" / f"{s}.md").read_text() for s in rows}
    assert "time limit" in feedback["infinite_loop"] and "NameError" in feedback["renamed"]
    assert "shape (1000,)" in feedback["wrong_shape"] and "kernel died" in feedback["kills_kernel"]
    assert max(len(f) for f in feedback.values()) < 5_000  # megabytes of printing never reach the feedback


def test_grade_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="exercises:"):
        course.grade(tmp_path, "99_nope", solutions=SOLUTIONS, progress=False)
    with pytest.raises(FileNotFoundError, match="no submissions"):
        course.grade(tmp_path, "01_forward_process", solutions=SOLUTIONS, progress=False)
    assert cli.main(["course", "grade"]) == 2  # a clear error, not a traceback
