"""FaceDataset and album loading, including multi-worker DataLoaders fed the training order."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from _data_helpers import face_like_cond, image_index, index_image, write_store
from dre.data import FaceDataset, load_album_tensors
from dre.errors import DreError
from dre.train.shards import EpochStream, StepBatchSampler

SIZE = 32


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two LMDBs (sizes 5 and 12) whose images encode their global index."""
    root = tmp_path_factory.mktemp("stores")
    paths, conds, g = [], {}, 0
    for k, n in enumerate((5, 12)):
        imgs, cs = [], []
        for _ in range(n):
            imgs.append(index_image(g, SIZE))
            cs.append(face_like_cond(SIZE, g))
            conds[g] = cs[-1]
            g += 1
        write_store(root / f"s{k}.lmdb", imgs, cs)
        paths.append(root / f"s{k}.lmdb")
    return paths, conds


def test_items_image_range_and_condition_order(stores):
    paths, conds = stores
    ds = FaceDataset(paths)
    assert len(ds) == 17 and ds.locate(5) == (1, 0) and ds.locate(4) == (0, 4)
    for g in (0, 4, 5, 16):
        item = ds[g]
        assert set(item) == {"image", "cond"}
        img, cond = item["image"], item["cond"]
        assert img.dtype == cond.dtype == torch.float32
        assert img.shape == (3, SIZE, SIZE) and cond.shape == (9, SIZE, SIZE)
        expect = torch.from_numpy(index_image(g, SIZE)).permute(2, 0, 1).float() / 127.5 - 1
        torch.testing.assert_close(img, expect, rtol=0, atol=1e-6)
        assert image_index(img) == g
        ref = torch.from_numpy(conds[g].astype(np.float16).astype(np.float32))
        assert torch.equal(cond, ref)  # rendered(0:3), normal(3:6), albedo(6:9), unnormalised
    assert ds[0]["image"].min() >= -1 and ds[0]["image"].max() <= 1
    with pytest.raises(IndexError):
        ds[17]


def test_flip_is_off_by_default_and_consistent_when_on(stores):
    paths, _ = stores
    plain = FaceDataset(paths)
    ref = plain[3]
    torch.manual_seed(0)
    assert all(torch.equal(plain[3]["image"], ref["image"]) for _ in range(8))
    flip = FaceDataset(paths, flip=True)
    torch.manual_seed(0)
    seen = Counter()
    for _ in range(24):
        item = flip[3]
        if torch.equal(item["image"], ref["image"]):
            assert torch.equal(item["cond"], ref["cond"])
            seen["plain"] += 1
            continue
        seen["flipped"] += 1
        torch.testing.assert_close(item["image"], ref["image"].flip(-1), rtol=0, atol=0)
        mirrored = ref["cond"].flip(-1)
        assert torch.equal(item["cond"][3], -mirrored[3])  # normal x changes sign
        assert torch.equal(item["cond"][:3], mirrored[:3]) and torch.equal(item["cond"][4:], mirrored[4:])
    assert seen["plain"] > 0 and seen["flipped"] > 0


def test_mixed_image_sizes_are_refused(stores, tmp_path):
    write_store(tmp_path / "big.lmdb", [index_image(0, SIZE * 2)], [face_like_cond(SIZE * 2, 0)])
    with pytest.raises(DreError, match="different image sizes"):
        FaceDataset([stores[0][0], tmp_path / "big.lmdb"])


@pytest.mark.parametrize("flip", [False, True])
def test_multiworker_loader_yields_each_rank_its_slice_of_every_step(stores, flip):
    """DataLoader workers (forked after the parent opened the stores) read exactly the training order."""
    ds = FaceDataset(stores[0], flip=flip)
    ds[0]  # the parent touches the stores first: forked workers must reopen them, not share them
    stream = EpochStream(ds.lengths, [1.0, 1.0], seed=3)
    world, global_batch, steps = 2, 6, 5
    per_rank = []
    for rank in range(world):
        sampler = StepBatchSampler(stream, global_batch, rank, world, 0, steps)
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=2, persistent_workers=False)
        got = []
        for batch in loader:
            # a flipped image carries its index in the last two pixels of row 0
            got.append([image_index(img if _tag_ok(img) else img.flip(-1)) for img in batch["image"]])
        assert got == list(sampler)
        per_rank.append(got)
    for s in range(steps):
        assert per_rank[0][s] + per_rank[1][s] == stream.global_batch(s, global_batch).tolist()


def _tag_ok(img) -> bool:
    px = ((img[:, 0, 1] + 1) * 127.5).round().to(int).tolist()
    return px == [0, 255, 128]


def test_dataset_pickles_for_spawned_workers(stores):
    ds = FaceDataset(stores[0])
    ds[6]
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[6]["cond"], ds[6]["cond"])


def test_load_album_tensors(stores):
    paths, _ = stores
    images, cond = load_album_tensors(paths[0])
    ds = FaceDataset(paths[0])
    assert images.shape == (5, 3, SIZE, SIZE) and cond.shape == (5, 9, SIZE, SIZE)
    for i in range(5):
        assert torch.equal(images[i], ds[i]["image"]) and torch.equal(cond[i], ds[i]["cond"])
