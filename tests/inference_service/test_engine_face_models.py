"""The face model pool: each borrower holds models nobody else uses; returned ones are reused."""

from __future__ import annotations

from inference_service.engine.face_models import FaceModelPool


def test_borrowers_at_once_hold_different_models_and_later_ones_reuse_them() -> None:
    pool = FaceModelPool()
    pool.warm()
    with pool.borrow() as first, pool.borrow() as second:
        assert first is not second
        assert first.detector is not second.detector and first.mesh is not second.mesh
    # No third set is loaded: the two returned ones are lent again.
    with pool.borrow() as again, pool.borrow() as also:
        assert {id(again), id(also)} == {id(first), id(second)}
