"""ipywidgets front ends: each widget's logic lives in a plain class that the tests drive in Python."""
