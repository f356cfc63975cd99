"""make_optimizer: names, options and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scalinglab.errors import SpecError
from scalinglab.optim import OPTIMIZERS, MARSAdamW, MARSLion, MARSShampoo, make_optimizer


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("adamw", torch.optim.AdamW),
        ("mars-adamw", MARSAdamW),
        ("MARS-Lion", MARSLion),
        (" mars-shampoo ", MARSShampoo),
    ],
)
def test_names_build_their_optimizer_with_the_options(name: str, cls: type) -> None:
    model = nn.Linear(3, 2)
    opt = make_optimizer(name, model.parameters(), lr=1e-3, weight_decay=0.05)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 1e-3
    assert opt.param_groups[0]["weight_decay"] == 0.05


def test_mars_options_reach_the_optimizer() -> None:
    opt = make_optimizer("mars-lion", nn.Linear(3, 2).parameters(), gamma=0.1, mode="exact")
    assert isinstance(opt, MARSLion)
    assert opt.mode == "exact"
    assert opt.param_groups[0]["gamma"] == 0.1


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match="unknown optimizer 'mars-sgd'; choose one of") as info:
        make_optimizer("mars-sgd", nn.Linear(3, 2).parameters())
    assert all(name in str(info.value) for name in OPTIMIZERS)


def test_unknown_option_names_it_and_the_accepted_ones() -> None:
    with pytest.raises(SpecError, match="optimizer 'adamw' takes no option 'gamma'; it takes lr"):
        make_optimizer("adamw", nn.Linear(3, 2).parameters(), gamma=0.1)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_out_of_range_values_raise_spec_error(name: str) -> None:
    with pytest.raises(SpecError, match=r"-0\.5"):
        make_optimizer(name, nn.Linear(3, 2).parameters(), lr=-0.5)
