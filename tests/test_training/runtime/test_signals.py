"""Stopping long runs politely: SIGTERM as Ctrl-C, and a stop deferred to the end of the update under way."""

import os
import signal

import pytest

from training.runtime.signals import deferred_interrupt, terminate_as_interrupt


def test_sigterm_raises_keyboard_interrupt_inside_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_deferred_stop_waits_for_the_loop_and_a_second_signal_raises_at_once(signum):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with deferred_interrupt() as stop:
        assert not stop.requested
        stop.raise_if_requested()  # nothing asked yet
        os.kill(os.getpid(), signum)  # the update under way goes on
        assert stop.requested and stop.signal == signal.Signals(signum).name
        with pytest.raises(KeyboardInterrupt, match=signal.Signals(signum).name):
            os.kill(os.getpid(), signum)
        with pytest.raises(KeyboardInterrupt, match=signal.Signals(signum).name):
            stop.raise_if_requested()
    assert {s: signal.getsignal(s) for s in handlers} == handlers
