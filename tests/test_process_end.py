"""How a command's process ends (search.signals.run_command): with main's status, after every
atexit handler, without the interpreter's teardown (seconds with torch, Lightning and Ray)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "entry.py"
    script.write_text(textwrap.dedent("""\
        import atexit, logging, sys, tempfile
        from pathlib import Path
        from finesweep.search.signals import run_command
        out = Path(sys.argv[1])
        """) + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def test_main_status_buffered_output_atexit_handlers_and_temporary_folders_all_survive_the_early_end(tmp_path):
    result = _run(tmp_path, """\
        class Finalized:
            def __del__(self):
                (out / "torn-down").write_text("the interpreter's teardown ran")

        kept = Finalized()  # A module global: only the teardown would collect it.

        def main():
            global folder
            folder = tempfile.TemporaryDirectory(dir=out)  # Removed by weakref.finalize's atexit hook.
            (out / "folder").write_text(folder.name)
            atexit.register(lambda: (out / "atexit").write_text("ran"))
            handler = logging.FileHandler(out / "log.txt")
            logging.getLogger("x").addHandler(handler)
            logging.getLogger("x").warning("logged")
            sys.stdout.write("printed, not flushed")
            return 3

        run_command(main)
        """)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "printed, not flushed"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert not Path((tmp_path / "folder").read_text()).exists()
    assert (tmp_path / "log.txt").read_text() == "logged\n"
    assert not (tmp_path / "torn-down").exists()  # The teardown is what run_command skips.


def test_an_exception_escaping_main_is_printed_and_ends_with_status_1(tmp_path):
    result = _run(tmp_path, """\
        def main():
            atexit.register(lambda: (out / "atexit").write_text("ran"))
            raise RuntimeError("a bug")

        run_command(main)
        """)
    assert result.returncode == 1
    assert "RuntimeError: a bug" in result.stderr
    assert (tmp_path / "atexit").read_text() == "ran"


def test_sys_exit_inside_main_keeps_its_status_and_message(tmp_path):
    for code, status, stderr in (("0", 0, ""), ("None", 0, ""), ("2", 2, ""), ("'refused'", 1, "refused\n")):
        result = _run(tmp_path, f"""\
            def main():
                sys.exit({code})

            run_command(main)
            """)
        assert (result.returncode, result.stderr) == (status, stderr), code


def test_launch_py_help_and_a_usage_error_keep_argparses_statuses(tmp_path):
    helped = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--help"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert helped.returncode == 0 and "sweep" in helped.stdout
    wrong = subprocess.run([sys.executable, str(ROOT / "launch.py"), "no-such-command"], capture_output=True,
                           text=True, timeout=120, cwd=tmp_path)
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr
