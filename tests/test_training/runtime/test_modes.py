"""training.runtime.modes.evaluating: eval mode within the block, the module's own mode after, even on an error."""

import pytest
from torch import nn

from training.runtime.modes import evaluating


@pytest.mark.parametrize("training", [True, False])
def test_the_mode_is_given_back_as_it_was(training):
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train(training)
    with evaluating(net) as inside:
        assert inside is net and not net.training and not net[1].training
    assert net.training == training and net[1].training == training
    with pytest.raises(RuntimeError, match="boom"), evaluating(net):
        raise RuntimeError("boom")
    assert net.training == training
