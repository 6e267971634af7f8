"""The pure decoders, with arrays: NMS, SSD box decoding, BlazeFace anchors and boxes."""

from __future__ import annotations

import numpy as np

from edgetag.models import (
    blazeface_anchors,
    decode_blazeface_boxes,
    decode_ssd_boxes,
    iou,
    non_max_suppression,
    sigmoid,
)


def boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_iou() -> None:
    one = boxes((0, 0, 1, 1))[0]
    result = iou(one, boxes((0, 0, 1, 1), (0.5, 0, 1.5, 1), (2, 2, 3, 3), (0, 0, 0, 0)))
    np.testing.assert_allclose(result, [1.0, 1 / 3, 0.0, 0.0], atol=1e-6)


def test_nms_keeps_the_best_of_overlapping_boxes_and_all_separate_ones() -> None:
    candidates = boxes((0, 0, 1, 1), (0.05, 0, 1.05, 1), (2, 2, 3, 3), (0.6, 0, 1.6, 1))
    scores = np.array([0.8, 0.9, 0.7, 0.6], dtype=np.float32)
    assert non_max_suppression(candidates, scores, iou_threshold=0.5) == [1, 2, 3]
    assert non_max_suppression(candidates, scores, iou_threshold=0.95) == [1, 0, 2, 3]
    assert non_max_suppression(candidates, scores, iou_threshold=0.5, max_results=1) == [1]
    assert non_max_suppression(boxes(), np.zeros(0, np.float32), 0.5) == []


def encode_ssd(target: np.ndarray, anchors: np.ndarray, scales: tuple[float, ...]) -> np.ndarray:
    """The TF Object Detection API's box encoder, written independently to check the decoder against."""
    yc = (target[:, 1] + target[:, 3]) / 2
    xc = (target[:, 0] + target[:, 2]) / 2
    h = target[:, 3] - target[:, 1]
    w = target[:, 2] - target[:, 0]
    return np.stack(
        [
            (yc - anchors[:, 0]) / anchors[:, 2] * scales[0],
            (xc - anchors[:, 1]) / anchors[:, 3] * scales[1],
            np.log(h / anchors[:, 2]) * scales[2],
            np.log(w / anchors[:, 3]) * scales[3],
        ],
        axis=1,
    )


def test_ssd_decoding_inverts_the_box_encoder() -> None:
    anchors = np.array([[0.5, 0.5, 0.2, 0.2], [0.1, 0.9, 0.1, 0.3]], dtype=np.float32)  # yc, xc, h, w
    target = boxes((0.3, 0.2, 0.7, 0.9), (0.75, 0.05, 0.95, 0.2))
    scales = (10.0, 10.0, 5.0, 5.0)
    decoded = decode_ssd_boxes(encode_ssd(target, anchors, scales).astype(np.float32), anchors, scales)
    np.testing.assert_allclose(decoded, target, atol=1e-5)


def test_zero_encodings_decode_to_the_anchor_itself() -> None:
    anchors = np.array([[0.5, 0.25, 0.2, 0.4]], dtype=np.float32)
    decoded = decode_ssd_boxes(np.zeros((1, 4), np.float32), anchors, (10.0, 10.0, 5.0, 5.0))
    np.testing.assert_allclose(decoded, [[0.05, 0.4, 0.45, 0.6]], atol=1e-6)


def test_blazeface_anchor_grids() -> None:
    short = blazeface_anchors(128, [8, 16, 16, 16], interpolated_scale_aspect_ratio=1.0)
    assert short.shape == (896, 2)  # 16x16 cells x 2 anchors + 8x8 cells x 6 anchors
    np.testing.assert_allclose(short[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[1], short[0])  # two anchors per cell, same center
    np.testing.assert_allclose(short[2], [1.5 / 16, 0.5 / 16])  # x moves first
    np.testing.assert_allclose(short[512], [0.5 / 8, 0.5 / 8])
    full = blazeface_anchors(192, [4], interpolated_scale_aspect_ratio=0.0)
    assert full.shape == (2304, 2)  # 48x48 cells, one anchor each
    np.testing.assert_allclose(full[-1], [47.5 / 48, 47.5 / 48])


def test_blazeface_boxes_are_offsets_from_anchor_centers_in_input_pixels() -> None:
    anchors = np.array([[0.5, 0.5]], dtype=np.float32)
    raw = np.array([[12.8, -12.8, 64.0, 32.0] + [0.0] * 12], dtype=np.float32)
    np.testing.assert_allclose(
        decode_blazeface_boxes(raw, anchors, 128), [[0.35, 0.275, 0.85, 0.525]], atol=1e-6
    )


def test_sigmoid() -> None:
    np.testing.assert_allclose(sigmoid(np.array([0.0, 80.0, -80.0], np.float32)), [0.5, 1.0, 0.0], atol=1e-6)
