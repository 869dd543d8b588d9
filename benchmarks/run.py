"""`make bench`: every benchmark script in this folder, one after the other, each printing its table."""

import runpy

SCRIPTS = ["benchmarks.numpy_vs_loop"]

if __name__ == "__main__":
    for script in SCRIPTS:
        print(f"== {script}")
        runpy.run_module(script, run_name="__main__")
