# tests/submissions/ holds deliberately broken learner notebooks (infinite loops, crashes, files that are
# not notebooks) that tests/test_course.py feeds to the grader; nbval must not execute them as notebooks.
collect_ignore_glob = ["submissions/*"]
