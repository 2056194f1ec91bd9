"""Tests for overlayflow.policy: shapes, initialization, the objective, augmentation, weights, EMA.

Everything runs on the CPU with tiny transformers (the encoder is always a full ResNet-18, at 32×32)
and never downloads weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import timm
import torch
import torchvision.transforms.functional as TF
from torch import nn

from overlayflow.dataset.normalizer import LimitsNormalizer
from overlayflow.policy.encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageEncoder,
    augment_images,
    color_jitter,
    coordinate_channels,
    map_resnet_keys,
)
from overlayflow.policy.model import (
    EMA,
    ManiFlowPolicy,
    autocast,
    consistency_target,
    count_parameters,
    split_batch,
)
from overlayflow.settings import PolicyConfig

TINY = dict(
    image_size=32,
    n_layers=1,
    width=32,
    heads=4,
    horizon=6,
    n_obs_steps=2,
    n_action_steps=5,
    time_embed_dim=16,
)


LOW, HIGH = torch.full((14,), -2.0), torch.full((14,), 3.0)
LIMITS = LimitsNormalizer(LOW.numpy(), HIGH.numpy())


def tiny(**overrides) -> PolicyConfig:
    return PolicyConfig.defaults(**{**TINY, **overrides})


@pytest.fixture
def make_policy():
    def make(normalizer=LIMITS, **overrides) -> ManiFlowPolicy:
        torch.manual_seed(0)
        return ManiFlowPolicy(tiny(**overrides), normalizer)

    return make


def make_batch(cfg: PolicyConfig, batch_size: int = 4, size: int = 40, seed: int = 0) -> dict:
    """uint8 images at `size` (≠ image_size, so the resize runs), agent_pos, task, action."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch_size, cfg.n_obs_steps, cfg.image_channels, size, size)
    batch = {
        key: torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) for key in cfg.image_keys
    }
    batch["agent_pos"] = torch.randn(batch_size, cfg.n_obs_steps, cfg.state_dim, generator=g)
    batch["task"] = torch.zeros(batch_size, dtype=torch.long)
    batch["action"] = LOW + (HIGH - LOW) * torch.rand(batch_size, cfg.horizon, 14, generator=g)
    return batch


# Config


def test_config_round_trip_and_defaults() -> None:
    cfg = PolicyConfig.defaults()
    assert (cfg.n_layers, cfg.width, cfg.heads, cfg.horizon, cfg.n_obs_steps) == (8, 512, 8, 16, 2)
    assert cfg.n_action_steps == 15 and cfg.weights is None and cfg.flow_t_beta == (1.0, 1.5)
    data = cfg.to_dict()
    assert data["jitter"] == [0.3, 0.4, 0.5, 0.08]
    assert PolicyConfig.from_dict(data) == cfg


def test_the_tiny_backbone_gives_its_128_features_and_takes_no_weights(make_policy) -> None:
    policy = make_policy(backbone="resnet_tiny")
    cfg = policy.cfg
    assert cfg.cond_dim == 128 * 2 * 2 + 14 * 2
    assert policy.encode_obs(make_batch(cfg)).shape == (4, cfg.cond_dim)
    norms = [m for m in policy.encoders.modules() if "Norm" in type(m).__name__]
    assert norms and all(isinstance(m, nn.GroupNorm) for m in norms)
    with pytest.raises(ValueError, match=r"`weights`.*resnet_tiny"):
        tiny(backbone="resnet_tiny", weights="r3m.pt")


def test_the_memory_encoded_once_conditions_as_the_repeated_initial_key(make_policy) -> None:
    policy = make_policy().eval()
    batch = make_batch(policy.cfg)
    batch["initial"] = batch["initial"][:, :1].expand_as(batch["initial"]).clone()
    features = {"initial": policy.encode_memory(batch["initial"][:, 0])}
    torch.testing.assert_close(
        policy.encode_obs(batch, features=features), policy.encode_obs(batch), rtol=1e-5, atol=1e-5
    )
    noise = torch.randn(4, policy.cfg.horizon, 14)
    torch.testing.assert_close(
        policy.sample_chunk(batch, noise=noise, features=features),
        policy.sample_chunk(batch, noise=noise),
        rtol=1e-4,
        atol=1e-4,
    )


def test_cond_dims_from_config() -> None:
    assert PolicyConfig.defaults(memory="initial+current").cond_dim == 512 * 2 * 2 + 14 * 2 == 2076
    assert PolicyConfig.defaults(memory="current").cond_dim == 512 * 2 + 14 * 2 == 1052
    assert PolicyConfig.defaults(memory="current", image_channels=6).cond_dim == 1052


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"image_channels": 4}, "image_channels"),
        ({"memory": "initial"}, "memory"),
        ({"width": 30, "heads": 4}, "width"),
        ({"flow_batch_ratio": 0.0}, "flow_batch_ratio"),
        ({"crop": 1.5}, "crop"),
        ({"jitter": (0.3, 0.4, 0.5)}, "jitter"),
        ({"shared_encoder": "yes"}, "shared_encoder"),
        ({"image_size": 16}, "image_size"),
        ({"backbone": "vit"}, "backbone"),
        ({"backbone": ["resnet18"]}, "backbone"),
        ({"n_layers": 0}, "n_layers"),
        ({"time_embed_dim": 17}, "time_embed_dim"),
    ],
)
def test_config_errors_name_the_key(overrides, name) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        PolicyConfig.defaults(**overrides)


def test_config_rejects_overflowing_action_slice() -> None:
    with pytest.raises(ValueError, match=r"16/2/16 gives 15.*n_action_steps=16"):
        PolicyConfig.defaults(horizon=16, n_obs_steps=2, n_action_steps=16)
    PolicyConfig.defaults(horizon=16, n_obs_steps=1, n_action_steps=16)


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown policy settings \['n_layer'\]"):
        PolicyConfig.defaults(n_layer=8)


# Shapes and sizes


@pytest.mark.parametrize("channels", [3, 6])
@pytest.mark.parametrize("memory", ["initial+current", "current"])
@pytest.mark.parametrize("shared", [False, True])
def test_shapes_for_every_layout(make_policy, channels, memory, shared) -> None:
    policy = make_policy(image_channels=channels, memory=memory, shared_encoder=shared)
    cfg = policy.cfg
    EMA(policy)
    batch = make_batch(cfg, batch_size=3)
    assert len(policy.encoders) == (1 if shared or memory == "current" else 2)
    assert policy.encode_obs(batch).shape == (3, cfg.cond_dim)
    assert cfg.cond_dim == len(cfg.image_keys) * 2 * 512 + 2 * 14
    loss, metrics = policy.compute_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(metrics) == {
        "loss",
        "loss_flow",
        "loss_consistency",
        "v_flow_rms",
        "v_consistency_rms",
    }
    # Read only when a row is logged: tensors, detached from the graph.
    assert all(v.ndim == 0 and not v.requires_grad for v in metrics.values())
    assert metrics["loss"].item() == loss.item()
    policy.eval()
    assert policy.sample_chunk(batch).shape == (3, cfg.horizon, 14)
    assert policy.predict_action(batch).shape == (3, cfg.n_action_steps, 14)


def test_original_size_parameter_counts() -> None:
    """8 × 512 × 8 DiT-X with 2076-d conditioning + two ResNet-18/GN: ≈78 M, as reported."""
    policy = ManiFlowPolicy(PolicyConfig.defaults(), LIMITS)
    assert count_parameters(policy.transformer) == 55_053_838
    assert count_parameters(policy.encoders) == 2 * 11_176_512
    assert count_parameters(policy) == 77_406_862
    assert not any(isinstance(m, nn.BatchNorm2d) for m in policy.modules())
    groups = [
        m.num_groups * 16 == m.num_channels for m in policy.modules() if isinstance(m, nn.GroupNorm)
    ]
    assert groups and all(groups)


def test_transformer_initial_output_is_exactly_zero(make_policy) -> None:
    policy = make_policy()
    cfg = policy.cfg
    x = torch.randn(5, cfg.horizon, 14)
    out = policy.transformer(
        x,
        torch.rand(5),
        torch.rand(5),
        torch.randn(5, cfg.cond_dim),
        torch.zeros(5, dtype=torch.long),
    )
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))


# Objective


def test_consistency_target_pinned() -> None:
    # x̂1 = 2 + (1 − 0.75)·4 = 3; (3 − 1) / (1 − 0.5) = 4
    one = torch.ones(1, 1, 1)
    target = consistency_target(
        1 * one, 2 * one, torch.tensor([0.5]), torch.tensor([0.75]), 4 * one
    )
    assert target.item() == pytest.approx(4.0)

    g = torch.Generator().manual_seed(0)
    x0, x1, v = (torch.randn(3, 6, 14, generator=g) for _ in range(3))
    t, t_next = torch.tensor([0.0, 0.3, 0.9]), torch.tensor([0.4, 1.0, 1.0])
    x_t = (1 - t.view(-1, 1, 1)) * x0 + t.view(-1, 1, 1) * x1
    x_next = (1 - t_next.view(-1, 1, 1)) * x0 + t_next.view(-1, 1, 1) * x1
    target = consistency_target(x_t, x_next, t, t_next, v)
    for i in range(3):
        expected = (x_next[i] + (1 - t_next[i]) * v[i] - x_t[i]) / (1 - t[i])
        torch.testing.assert_close(target[i], expected)
    # t' = 1: the teacher drops out and the target is the straight-line velocity x1 − x0.
    torch.testing.assert_close(target[1:], (x1 - x0)[1:], rtol=1e-5, atol=1e-5)
    # A perfect teacher (v̄ = x1 − x0) gives x1 − x0 at any t.
    torch.testing.assert_close(
        consistency_target(x_t, x_next, t, t_next, x1 - x0), x1 - x0, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    ("batch_size", "expected"),
    [
        (64, (48, 16)),
        (128, (96, 32)),
        (10, (8, 2)),
        (4, (3, 1)),
        (3, (2, 1)),
        (2, (1, 1)),
        (1, (1, 0)),
    ],
)
def test_split_batch(batch_size, expected) -> None:
    assert split_batch(batch_size, 0.75) == expected
    assert sum(split_batch(batch_size, 0.75)) == batch_size


def test_split_batch_pure_flow() -> None:
    assert split_batch(8, 1.0) == (8, 0)
    assert split_batch(8, 0.1) == (1, 7)


def test_compute_loss_splits_the_batch_and_runs_the_encoder_once(make_policy) -> None:
    policy = make_policy(memory="current")
    ema = EMA(policy)
    sizes: dict[str, list[int]] = {"student": [], "teacher": [], "encoder": []}
    policy.transformer.register_forward_hook(lambda m, a, o: sizes["student"].append(a[0].shape[0]))
    ema.module.transformer.register_forward_hook(
        lambda m, a, o: sizes["teacher"].append(a[0].shape[0])
    )
    policy.encoders["current"].register_forward_hook(
        lambda m, a, o: sizes["encoder"].append(a[0].shape[0])
    )
    policy.compute_loss(make_batch(policy.cfg, batch_size=8))
    assert sizes == {"student": [6, 2], "teacher": [2], "encoder": [8 * 2]}


def test_compute_loss_needs_the_ema_teacher(make_policy) -> None:
    policy = make_policy()
    with pytest.raises(RuntimeError, match="EMA"):
        policy.compute_loss(make_batch(policy.cfg))
    with pytest.raises(ValueError, match="teacher"):
        policy.set_teacher(policy.transformer)
    # Pure flow matching (or a batch of one) has no consistency part and needs no teacher.
    make_policy(flow_batch_ratio=1.0).compute_loss(make_batch(policy.cfg))
    policy.compute_loss(make_batch(policy.cfg, batch_size=1))


def test_gradients_reach_the_encoders_not_the_teacher(make_policy) -> None:
    policy = make_policy()
    ema = EMA(policy)
    # Zero-init gates block every gradient on the first step; one update opens them.
    for param in policy.transformer.parameters():
        param.data.add_(0.01 * torch.randn_like(param))
    loss, _ = policy.compute_loss(make_batch(policy.cfg))
    loss.backward()
    for encoder in policy.encoders.values():
        assert encoder.net.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in ema.module.parameters())


def test_the_image_action_loss_sees_the_images_only_and_trains_only_the_encoder_side(
    make_policy,
) -> None:
    policy = make_policy(image_action_weight=2.0)
    assert not hasattr(make_policy(), "image_action")  # off by default: ManiFlow's objective
    EMA(policy)
    for param in policy.transformer.parameters():  # open the zero-init gates
        param.data.add_(0.01 * torch.randn_like(param))
    batch = make_batch(policy.cfg)
    torch.manual_seed(1)
    _, parts = policy.compute_loss(batch)
    # The agent_pos is not among its inputs: another state leaves its loss as it was.
    moved = {**batch, "agent_pos": batch["agent_pos"] + 5.0}
    torch.manual_seed(1)
    _, moved_parts = policy.compute_loss(moved)
    assert moved_parts["loss_image_action"] == parts["loss_image_action"]
    assert moved_parts["loss_flow"] != parts["loss_flow"]
    # Its weighted value is part of the loss, and its gradient reaches the encoder and its head,
    # not the transformer.
    total = parts["loss_flow"] + parts["loss_consistency"] + 2.0 * parts["loss_image_action"]
    assert torch.isclose(parts["loss"], total)
    policy.zero_grad()
    features = policy.encode_obs(batch, augment=False)[:, : policy.cfg.image_dim]
    guess = policy.image_action(features).view(-1, policy.cfg.horizon, policy.cfg.action_dim)
    torch.nn.functional.mse_loss(guess, policy.normalize(batch["action"])).backward()
    assert all(e.net.conv1.weight.grad.abs().sum() > 0 for e in policy.encoders.values())
    assert all(p.grad is None for p in policy.transformer.parameters())


# Augmentation


def test_augmentation_is_per_sample_and_training_only(make_policy) -> None:
    policy = make_policy(memory="current")
    frame = torch.randint(0, 256, (1, 1, 3, 32, 32), dtype=torch.uint8)
    images = frame.expand(2, 2, 3, 32, 32)  # two identical samples of two identical frames
    plain = policy.preprocess(images, "current", augment=False)
    assert torch.equal(plain, images.flatten(0, 1).float() / 255)

    torch.manual_seed(1)
    out = policy.preprocess(images, "current", augment=True).view(2, 2, 3, 32, 32)
    assert (out - plain.view(2, 2, 3, 32, 32)).abs().mean() > 0.01
    assert (out[0] - out[1]).abs().mean() > 0.01  # each sample its own draw
    torch.testing.assert_close(out[0, 0], out[0, 1])  # shared by the frames of one sample

    # compute_loss augments in train mode only: its encoder inputs differ between calls.
    EMA(policy)
    seen = []
    policy.encoders["current"].register_forward_hook(lambda m, a, o: seen.append(a[0]))
    batch = make_batch(policy.cfg, batch_size=2)
    policy.compute_loss(batch)
    policy.compute_loss(batch)
    assert not torch.equal(seen[0], seen[1])
    policy.eval()
    policy.compute_loss(batch)
    policy.compute_loss(batch)
    assert torch.equal(seen[2], seen[3])


def test_augmentation_identity_and_rgb_only_jitter() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 6, 32, 32, generator=g)
    still = tiny(crop=1.0, rotation=0.0, jitter=(0.0, 0.0, 0.0, 0.0))
    torch.testing.assert_close(augment_images(images, 2, still), images, atol=1e-5, rtol=0)
    colour = tiny(crop=1.0, rotation=0.0, image_channels=6)
    out = augment_images(images, 2, colour)
    torch.testing.assert_close(out[:, 3:], images[:, 3:], atol=1e-5, rtol=0)  # path half untouched
    assert (out[:, :3] - images[:, :3]).abs().mean() > 0.01


def test_color_jitter_matches_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(3, 3, 16, 16, generator=g)
    factors = [
        torch.tensor([0.7, 1.0, 1.3]),
        torch.tensor([0.6, 1.2, 1.4]),
        torch.tensor([0.5, 1.5, 1.1]),
    ]
    hue = torch.tensor([-0.08, 0.0, 0.05])
    out = color_jitter(rgb, *factors, hue)
    for i in range(3):
        expected = TF.adjust_brightness(rgb[i], factors[0][i].item())
        expected = TF.adjust_contrast(expected, factors[1][i].item())
        expected = TF.adjust_saturation(expected, factors[2][i].item())
        expected = TF.adjust_hue(expected, hue[i].item())
        torch.testing.assert_close(out[i], expected, atol=2e-4, rtol=0)


# Encoder weights


def _r3m_checkpoint(path, in_chans: int = 3) -> dict:
    """A synthetic R3M file: a BatchNorm ResNet-18 under R3M's key names, with its extras."""
    torch.manual_seed(3)
    bn_resnet = timm.create_model("resnet18", pretrained=False, in_chans=in_chans)
    for module in bn_resnet.modules():
        if isinstance(module, nn.BatchNorm2d):  # non-trivial affine, to see it arrive in GroupNorm
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    state = {
        f"module.convnet.{k}": v
        for k, v in bn_resnet.state_dict().items()
        if not k.startswith("fc.")
    }
    state["module.lang_enc.model.embeddings.word_embeddings.weight"] = torch.randn(10, 4)
    state["module.lang_rew.pred.0.weight"] = torch.randn(4, 4)
    torch.save({"r3m": state}, path)
    return bn_resnet.state_dict()


def test_r3m_key_mapping() -> None:
    state = {
        "module.convnet.conv1.weight": torch.zeros(1),
        "module.convnet.layer1.0.bn1.weight": torch.zeros(1),
        "module.convnet.layer1.0.bn1.running_mean": torch.zeros(1),
        "module.convnet.layer1.0.bn1.num_batches_tracked": torch.zeros(1),
        "module.lang_enc.model.x": torch.zeros(1),
        "module.lang_rew.pred.0.weight": torch.zeros(1),
    }
    assert sorted(map_resnet_keys(state)) == ["conv1.weight", "layer1.0.bn1.weight"]
    assert sorted(map_resnet_keys({"conv1.weight": 1, "fc.weight": 2, "fc.bias": 3})) == [
        "conv1.weight"
    ]


def test_r3m_checkpoint_loads(tmp_path) -> None:
    path = tmp_path / "r3m_18.pt"
    source = _r3m_checkpoint(path)
    encoder = ImageEncoder("resnet18", 3, str(path), imagenet_norm=True)
    own = encoder.net.state_dict()
    torch.testing.assert_close(own["conv1.weight"], source["conv1.weight"])
    torch.testing.assert_close(
        own["layer3.0.downsample.1.weight"], source["layer3.0.downsample.1.weight"]
    )
    torch.testing.assert_close(own["bn1.bias"], source["bn1.bias"])  # BN affine → GroupNorm affine
    assert isinstance(encoder.net.bn1, nn.GroupNorm)

    six = ImageEncoder("resnet18", 6, str(path))
    conv1 = source["conv1.weight"]
    torch.testing.assert_close(six.net.conv1.weight, torch.cat([conv1, conv1], 1) * 0.5)


def test_coordinate_channels_give_each_pixel_its_column_and_row() -> None:
    images = torch.rand(2, 3, 4, 5)
    out = coordinate_channels(images)
    assert out.shape == (2, 5, 4, 5)
    torch.testing.assert_close(out[:, :3], images)
    torch.testing.assert_close(out[1, 3, 2], torch.linspace(-1, 1, 5))  # column, along a row
    torch.testing.assert_close(out[0, 4, :, 1], torch.linspace(-1, 1, 4))  # row, down a column


def test_coords_widen_the_first_convolution_and_pretrained_filters_ignore_them(tmp_path) -> None:
    policy = ManiFlowPolicy(tiny(coords=True), LIMITS)
    assert policy.encoders["initial"].net.conv1.in_channels == 5
    assert policy.encoders["initial"](torch.rand(2, 3, 32, 32)).shape == (2, 512)
    path = tmp_path / "r3m_18.pt"
    conv1 = _r3m_checkpoint(path)["conv1.weight"]
    six = ImageEncoder("resnet18", 6, str(path), coords=True)
    expected = torch.cat([conv1 * 0.5, conv1 * 0.5, torch.zeros_like(conv1[:, :2])], 1)
    torch.testing.assert_close(six.net.conv1.weight, expected)


def test_pretrained_weights_switch_on_imagenet_normalization(tmp_path) -> None:
    path = tmp_path / "resnet18.pth"  # torchvision-style: plain keys, with the fc classifier
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    policy = ManiFlowPolicy(tiny(memory="current", weights=str(path)), LIMITS)
    assert policy.encoders["current"].imagenet_norm
    scratch = ManiFlowPolicy(tiny(memory="current"), LIMITS)
    assert not scratch.encoders["current"].imagenet_norm
    images = torch.full((1, 3, 32, 32), 0.5)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    expected = (images - mean) / std
    encoder = policy.encoders["current"]
    torch.testing.assert_close(encoder(images), encoder.net(expected))


class NotATensor:
    pass


def test_bad_weight_files_give_clear_errors(tmp_path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ValueError, match="weights_only=True"):
        ImageEncoder("resnet18", 3, str(corrupt))

    pickled = tmp_path / "object.pt"
    torch.save({"r3m": NotATensor()}, pickled)
    with pytest.raises(ValueError, match="weights_only=True"):
        ImageEncoder("resnet18", 3, str(pickled))

    foreign = tmp_path / "foreign.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, foreign)
    with pytest.raises(
        ValueError, match=r"do not fit a GroupNorm resnet18: 60 missing keys .* 1 unexpected"
    ):
        ImageEncoder("resnet18", 3, str(foreign))

    with pytest.raises(FileNotFoundError, match="no such file"):
        ImageEncoder("resnet18", 3, str(tmp_path / "absent.pt"))


def test_weights_are_loaded_with_weights_only(tmp_path, monkeypatch) -> None:
    path = tmp_path / "r3m.pt"
    _r3m_checkpoint(path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    ImageEncoder("resnet18", 3, str(path))
    assert calls == [{"map_location": "cpu", "weights_only": True}]


# Normalizer, optimizer groups, devices


def test_normalizer_becomes_module_state(make_policy) -> None:
    policy = make_policy()
    state = policy.state_dict()
    torch.testing.assert_close(state["action_scale"], torch.full((14,), 0.4))
    torch.testing.assert_close(state["action_offset"], torch.full((14,), -0.2))
    action = torch.stack([LOW, HIGH])
    torch.testing.assert_close(
        policy.normalize(action), torch.stack([-torch.ones(14), torch.ones(14)])
    )
    torch.testing.assert_close(policy.unnormalize(policy.normalize(action)), action)


def test_normalizer_of_other_actions_is_refused(make_policy) -> None:
    with pytest.raises(ValueError, match="fitted on 7 dimensions; the policy's `action_dim` is 14"):
        make_policy(LimitsNormalizer(np.zeros(7), np.ones(7)))


def test_optim_groups_cover_every_parameter_once(make_policy) -> None:
    policy = make_policy()
    decay, no_decay = (group["params"] for group in policy.optim_groups(1e-3))
    ids = [id(p) for p in decay + no_decay]
    assert len(ids) == len(set(ids)) == len(list(policy.parameters()))
    no_decay_ids = {id(p) for p in no_decay}
    t = policy.transformer
    for param in (
        t.pos_emb,
        t.cond_pos_emb,
        t.task_emb.weight,
        t.final_norm.weight,
        t.input_emb.bias,
        policy.encoders["current"].net.bn1.weight,
    ):
        assert id(param) in no_decay_ids
    for param in (
        t.input_emb.weight,
        t.blocks[0].self_attn.qkv.weight,
        policy.encoders["initial"].net.conv1.weight,
    ):
        assert id(param) not in no_decay_ids


def test_autocast_is_a_no_op_on_cpu(make_policy) -> None:
    with autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": we only inspect the object
        cuda = autocast("cuda")
    assert isinstance(cuda, torch.autocast) and cuda.fast_dtype == torch.bfloat16
    policy = make_policy().to_device("cpu")
    assert policy.encoders["current"].net.conv1.weight.is_contiguous()


def test_bf16_mixed_precision_path_runs(make_policy) -> None:
    """The CUDA bf16 path (bf16 features next to fp32 agent_pos, fp32 losses), on the CPU."""
    policy = make_policy()
    EMA(policy)
    batch = make_batch(policy.cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = policy.compute_loss(batch)
        loss.backward()
        actions = policy.eval().predict_action(batch)
    assert loss.dtype == actions.dtype == torch.float32
    assert torch.isfinite(loss) and torch.isfinite(actions).all()


def test_input_errors(make_policy) -> None:
    policy = make_policy(memory="current")
    batch = make_batch(policy.cfg)
    with pytest.raises(ValueError, match=r"`current` must be \(B, 2, 3, H, W\)"):
        policy.encode_obs({**batch, "current": batch["current"][:, :, :1]})
    with pytest.raises(KeyError, match="agent_pos"):
        policy.encode_obs({"current": batch["current"]})
    EMA(policy)
    with pytest.raises(ValueError, match=r"`task` must be 4 ids in \[0, 1\)"):
        policy.compute_loss({**batch, "task": torch.tensor([0, 0, 0, 1])})
    with pytest.raises(ValueError, match=r"`action` must be \(B, 6, 14\)"):
        policy.compute_loss({**batch, "action": batch["action"][:, :5]})


def test_sampling_is_reproducible_with_a_generator(make_policy) -> None:
    policy = make_policy(memory="current").eval()
    batch = make_batch(policy.cfg)
    first = policy.predict_action(batch, generator=torch.Generator().manual_seed(5))
    again = policy.predict_action(batch, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, again)
    # An untrained policy (zero velocity) returns its noise, unnormalized.
    noise = torch.randn(4, policy.cfg.horizon, 14, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, policy.unnormalize(noise)[:, 1:6])


# EMA


def test_ema_decay_schedule_pinned(make_policy) -> None:
    """diffusion_policy's EMAModel schedule (power 0.75, inv_gamma 1, at most 0.9999)."""
    ema = EMA(make_policy())
    assert ema.get_decay(0) == 0.0 and ema.get_decay(1) == 0.0
    assert ema.get_decay(2) == pytest.approx(1 - 2**-0.75)  # 0.4054
    assert ema.get_decay(10) == pytest.approx(1 - 10**-0.75)  # 0.8222
    assert ema.get_decay(1001) == pytest.approx(1 - 1001**-0.75)  # 0.9944
    assert ema.get_decay(10**7) == 0.9999


def test_ema_update_teacher_and_state(make_policy) -> None:
    policy = make_policy()
    ema = EMA(policy)
    assert policy._teacher == [ema.module.transformer]
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    assert not ema.module._teacher  # the copy carries no teacher of its own
    assert not any("teacher" in key for key in policy.state_dict())
    assert count_parameters(policy) == count_parameters(ema.module)

    with torch.no_grad():
        for param in policy.parameters():
            param.add_(1.0)
    ema.update(policy, 0)  # decay 0: a copy
    ema.update(policy, 1)  # decay 0 again
    for mine, theirs in zip(ema.module.parameters(), policy.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)
    with torch.no_grad():
        policy.transformer.pos_emb.add_(1.0)
    before = ema.module.transformer.pos_emb.clone()
    ema.update(policy, 2)  # decay(2) = 1 − 2^−0.75
    d = 1 - 2**-0.75
    torch.testing.assert_close(
        ema.module.transformer.pos_emb, d * before + (1 - d) * policy.transformer.pos_emb
    )
    # Buffers are copied, not averaged.
    torch.testing.assert_close(ema.module.action_scale, policy.action_scale)

    # The checkpoint keeps the EMA weights under the policy's own keys.
    state = ema.module.state_dict()
    assert state.keys() == policy.state_dict().keys()
    restored_policy = make_policy()
    restored = EMA(restored_policy)
    restored.module.load_state_dict(state)
    torch.testing.assert_close(restored.module.transformer.pos_emb, ema.module.transformer.pos_emb)
    assert restored_policy._teacher[0] is restored.module.transformer
    with pytest.raises(TypeError, match="step"):
        restored.update(restored_policy)  # timm's default step would skip the warm-up


# Overfitting one batch


def test_overfits_one_batch() -> None:
    """Two observation → chunk pairs, 250 AdamW steps: the loss falls below a tenth of its start
    and Euler sampling (10 steps) returns each sample's own chunk within 10% of the action range.

    The encoder is frozen here only to keep the test fast (its gradients are tested above)."""
    torch.manual_seed(0)
    cfg = tiny(
        n_layers=2,
        width=64,
        horizon=8,
        n_action_steps=7,
        memory="current",
        attn_dropout=0.0,
        augment=False,
    )
    policy = ManiFlowPolicy(cfg, LIMITS)
    policy.encoders.requires_grad_(False)
    ema = EMA(policy)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 2, 3, 32, 32), generator=g, dtype=torch.uint8)
    state = torch.randn(2, 2, 14, generator=g)
    steps, dims = torch.linspace(0, 1, 8)[:, None], torch.arange(14)
    chunks = LOW + (HIGH - LOW) * torch.stack(
        [
            0.5 + 0.4 * torch.sin(3 * steps + 0.3 * dims),
            0.5 - 0.4 * torch.cos(2 * steps + 0.5 * dims),
        ]
    )
    pick = torch.arange(8) % 2
    batch = {"current": images[pick], "agent_pos": state[pick], "action": chunks[pick]}
    optimizer = torch.optim.AdamW(
        policy.optim_groups(1e-3), lr=1e-3, betas=(0.9, 0.95), foreach=True
    )

    def mean_loss() -> float:
        return sum(policy.compute_loss(batch)[1]["loss"].item() for _ in range(5)) / 5

    start = mean_loss()
    for step in range(250):
        loss, _ = policy.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(policy, step)
    assert mean_loss() < 0.1 * start  # typically 2.3 → 0.12

    policy.eval()
    actions = policy.predict_action(
        {"current": images[pick], "agent_pos": state[pick]},
        generator=torch.Generator().manual_seed(0),
    )
    own = (actions - chunks[pick][:, 1:8]).abs().mean(dim=(1, 2))
    other = (actions - chunks[1 - pick][:, 1:8]).abs().mean(dim=(1, 2))
    assert own.mean() < 0.1 * (HIGH - LOW)[0]  # typically 0.28 (≈6% of the range)
    assert torch.all(own < other)  # typically ≈1.1
