"""Decode workers: a call past its deadline is abandoned without stalling the others or the process."""
import threading
import time

import pytest

from dalitrain.pipelines.decode import DecodeError
from dalitrain.pipelines.workers import DecodeTimeout, DecodeWorkers


def test_a_hung_call_times_out_and_the_pool_keeps_its_size():
    workers = DecodeWorkers(1, "test")
    release = threading.Event()
    hung = workers.submit(release.wait)  # never set: hangs like a stuck FFmpeg call
    with pytest.raises(DecodeTimeout, match=r"^v\.mp4: decoding did not finish within 0\.2 s"):
        workers.result(hung, 0.2, "v.mp4")
    # a fresh thread replaced the stuck one: the next call runs at once
    assert workers.result(workers.submit(lambda: 7), 5.0, "w.mp4") == 7
    assert issubclass(DecodeTimeout, DecodeError)  # the loader treats it as any bad file
    release.set()
    workers.shutdown()


def test_time_queued_behind_other_calls_does_not_count():
    workers = DecodeWorkers(1, "test")
    slow = workers.submit(time.sleep, 0.4)
    queued = workers.submit(lambda: "done")  # waits 0.4 s for the only thread, then runs in no time
    assert workers.result(queued, 0.3, "q.mp4") == "done"
    assert slow.done()
    workers.shutdown()


def test_errors_of_the_call_reach_the_caller():
    workers = DecodeWorkers(2, "test")
    future = workers.submit(lambda: (_ for _ in ()).throw(DecodeError("x.webm: cannot decode")))
    with pytest.raises(DecodeError, match="x.webm: cannot decode"):
        workers.result(future, None, "x.webm")
    workers.shutdown()
