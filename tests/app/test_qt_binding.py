"""The Qt binding itself: PySide6 6.12.0 lost a reference to True/False/None on every signal
emit, which aborted the interpreter ("bool_dealloc") after enough emits — at random in long GUI
sessions and test runs, often at exit. pyproject.toml excludes that release; this checks the
installed binding in a fresh process (a crash must not take the test session with it)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from PySide6.QtCore import QCoreApplication, QObject, Signal
app = QCoreApplication([])
class Emitter(QObject):
    flag = Signal(bool)
    value = Signal(object)
e = Emitter()
e.flag.connect(lambda v: None)
e.value.connect(lambda v: None)
before = sys.getrefcount(True), sys.getrefcount(None)
for _ in range(20000):
    e.flag.emit(True)
    e.value.emit(None)
after = sys.getrefcount(True), sys.getrefcount(None)
print(after[0] - before[0], after[1] - before[1])
"""


def test_signals_keep_the_references_of_python_singletons() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120,
                            env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["0", "0"]
