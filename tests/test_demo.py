"""The demo's own output: SGLang's (and its subprocesses') output goes to the log, the table says
what each run shows. The engine runs themselves are test_e2e_engine.py's (demo.run_engine)."""

import subprocess
import sys

from sglang_eagle3_ext import demo


def test_subprocess_output_goes_to_the_log_and_ours_to_the_terminal(tmp_path, capfd):
    log = tmp_path / "sglang.log"
    with demo.output_to(str(log)) as terminal:
        print("ours", file=terminal)
        print("python stdout")
        subprocess.run([sys.executable, "-c", "import sys; print('child out'); "
                        "print('child warning', file=sys.stderr)"], check=True)
    out, err = capfd.readouterr()
    assert out == "ours\n" and err == ""
    assert log.read_text().splitlines() == ["python stdout", "child out", "child warning"]
    print("after")  # the terminal is back
    assert capfd.readouterr().out == "after\n"


def run(ids, steps=None, accepted=None, length=None):
    return {"texts": ["x"], "output_ids": ids, "completion_tokens": 8, "verify_steps": steps,
            "accepted_tokens": accepted, "accept_length": length}


def test_table_rows():
    lines = demo.table({"baseline": run([[1, 2]]),
                        "EAGLE3, agreeing draft": run([[1, 2]], 4, 4, 2.0),
                        "EAGLE3, random draft": run([[1, 3]], 8, 0, 1.0)})
    rows = [line.split() for line in lines if line.startswith(("baseline", "EAGLE3"))]
    assert rows == [["baseline", "yes", "8", "-", "-"],
                    ["EAGLE3,", "agreeing", "draft", "yes", "8", "4", "2.00"],
                    ["EAGLE3,", "random", "draft", "NO", "8", "8", "1.00"]]
