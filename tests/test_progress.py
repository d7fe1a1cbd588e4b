"""Progress bars: on stderr while a terminal watches, silent in logs and pipes."""
import dalitrain.progress as progress_module
from dalitrain.progress import progress


def test_silent_when_not_a_terminal(capsys):
    assert list(progress(range(5), total=5, desc="scan")) == [0, 1, 2, 3, 4]
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""  # pytest captures: neither stream is a terminal


def test_a_bar_on_stderr_for_a_watcher(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "interactive", lambda: True)
    assert list(progress(iter(range(3)), total=3, desc="scan", unit="file")) == [0, 1, 2]
    captured = capsys.readouterr()
    assert captured.out == "" and "scan:" in captured.err and "/3 [" in captured.err
