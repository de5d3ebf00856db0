"""Make shared/reference/wan_pose: Wan2.2-Animate's own preprocessing functions run on known keypoints.

Run with a Python that has numpy, opencv and matplotlib, from a folder holding the Wan2.2 snapshot's
wan/modules/animate/preprocess (git archive HEAD of Wan-Video/Wan2.2). Writes OUT (argv[2]).
Nothing of Wan's code is copied into the output: only inputs and the arrays/images its functions return.
"""

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

SRC, OUT = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(SRC))
from human_visualization import draw_aapose_by_meta_new  # noqa: E402
from pose2d_utils import AAPoseMeta, load_pose_metas_from_kp2ds_seq  # noqa: E402
from retarget_pose import get_retarget_pose  # noqa: E402
from utils import get_aug_mask, get_face_bboxes, get_mask_body_img, padding_resize, resize_by_area  # noqa: E402


def figure(t, cx, cy, s, head=1.0, legs=1.0, arms=1.0):
    """133 COCO-WholeBody keypoints (x, y, score) of a stick person at phase t, in pixels."""
    k = np.zeros((133, 3))
    sh_y, hip_y = cy - 0.55 * s, cy + 0.05 * s
    sw, hw = 0.22 * s, 0.13 * s
    a = 0.6 * math.sin(t) * arms
    b = 0.25 * math.sin(t + 1.0)
    nose = (cx + 0.02 * s * math.sin(t), sh_y - 0.22 * s * head)
    k[0, :2] = nose
    k[1, :2] = (nose[0] - 0.04 * s * head, nose[1] - 0.03 * s * head)  # left eye (image right)
    k[2, :2] = (nose[0] + 0.04 * s * head, nose[1] - 0.03 * s * head)
    k[3, :2] = (nose[0] - 0.09 * s * head, nose[1])
    k[4, :2] = (nose[0] + 0.09 * s * head, nose[1])
    k[5, :2], k[6, :2] = (cx + sw, sh_y), (cx - sw, sh_y)  # left/right shoulder
    ua, la = 0.3 * s * arms, 0.28 * s * arms
    k[7, :2] = (k[5, 0] + ua * math.cos(-0.9 + a), k[5, 1] - ua * math.sin(-0.9 + a))
    k[8, :2] = (k[6, 0] - ua * math.cos(-0.9 - a), k[6, 1] - ua * math.sin(-0.9 - a))
    k[9, :2] = (k[7, 0] + la * math.cos(0.3 + a), k[7, 1] - la * math.sin(0.3 + a))
    k[10, :2] = (k[8, 0] - la * math.cos(0.3 - a), k[8, 1] - la * math.sin(0.3 - a))
    k[11, :2], k[12, :2] = (cx + hw, hip_y), (cx - hw, hip_y)
    th, sn = 0.45 * s * legs, 0.42 * s * legs
    k[13, :2] = (k[11, 0] + th * math.sin(b), k[11, 1] + th * math.cos(b))
    k[14, :2] = (k[12, 0] - th * math.sin(-b), k[12, 1] + th * math.cos(-b))
    k[15, :2] = (k[13, 0], k[13, 1] + sn)
    k[16, :2] = (k[14, 0], k[14, 1] + sn)
    for i, (ankle, d) in enumerate(((15, 1), (16, -1))):  # feet: big toe, small toe, heel
        x, y = k[ankle, :2]
        k[17 + 3 * i, :2] = (x + d * 0.09 * s, y + 0.04 * s)
        k[18 + 3 * i, :2] = (x + d * 0.05 * s, y + 0.05 * s)
        k[19 + 3 * i, :2] = (x - d * 0.02 * s, y + 0.03 * s)
    fx, fy, fr = nose[0], nose[1] + 0.01 * s, 0.1 * s * head  # face: 68 iBUG points
    face = []
    for j in range(17):
        ang = math.pi * (0.05 + 0.9 * j / 16)
        face.append((fx - fr * math.cos(ang), fy - 0.2 * fr + fr * 1.1 * math.sin(ang)))
    for j in range(10):
        face.append((fx - 0.7 * fr + 0.14 * fr * j + (0.1 * fr if j > 4 else 0), fy - 0.55 * fr))
    for j in range(9):
        face.append((fx + (0.0 if j < 4 else 0.08 * fr * (j - 6)), fy - 0.35 * fr + 0.1 * fr * min(j, 4)))
    for e in (-1, 1):
        for j in range(6):
            ang = 2 * math.pi * j / 6
            face.append((fx + e * 0.4 * fr + 0.15 * fr * math.cos(ang), fy - 0.3 * fr + 0.07 * fr * math.sin(ang)))
    for j in range(20):
        ang = 2 * math.pi * j / (12 if j < 12 else 8)
        r = 0.35 if j < 12 else 0.2
        face.append((fx + r * fr * math.cos(ang), fy + 0.5 * fr + 0.12 * fr * math.sin(ang) * (1 + 0.5 * math.sin(t))))
    k[23:91, :2] = face
    for h, (wrist, elbow) in enumerate(((9, 7), (10, 8))):  # hands: 21 points each
        wx, wy = k[wrist, :2]
        ex, ey = k[elbow, :2]
        base = math.atan2(wy - ey, wx - ex)
        pts = [(wx, wy)]
        for f in range(5):
            ang = base + (f - 2) * 0.35
            for j in range(1, 5):
                r = 0.025 * s * j * (0.8 if f == 0 else 1.0)
                pts.append((wx + r * math.cos(ang), wy + r * math.sin(ang)))
        k[91 + 21 * h : 112 + 21 * h, :2] = pts
    k[:, 2] = 0.9
    return k


def sequence(n, w, h, **shape):
    seq = np.stack([figure(2 * math.pi * i / n, w / 2, h * 0.5, h * 0.45, **shape) for i in range(n)])
    seq[2, 112:133, 2] = 0.0  # frame 2: right hand lost
    seq[3, [7, 9], 2] = 0.3  # frame 3: left elbow and wrist below the 0.5 threshold
    seq[4, 17:23, 2] = 0.2  # frame 4: feet uncertain
    return seq


def save_png(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR))


def to_jsonable(meta):
    return {k: (np.asarray(v, dtype=float).tolist() if not isinstance(v, (int, float)) else v) for k, v in meta.items()}


OUT.mkdir(parents=True, exist_ok=True)
(OUT / "expected").mkdir(exist_ok=True)
W, H, N = 384, 576, 6
tpl = sequence(N, W, H)
ref = figure(0.0, 160, 260, 300 * 0.7, head=1.6, legs=0.7, arms=0.85)[None]  # a chibi: big head, short legs
RW, RH = 320, 480
np.save(OUT / "template_kp2ds.npy", tpl)
np.save(OUT / "reference_kp2ds.npy", ref)

metas = load_pose_metas_from_kp2ds_seq(tpl, width=W, height=H)
np.savez(
    OUT / "expected" / "template_metas.npz",
    **{f"{i}_{k}": np.asarray(v) for i, m in enumerate(metas) for k, v in m.items() if k not in ("width", "height")},
)
boxes = []
frame = np.dstack(np.meshgrid(np.linspace(0, 255, W), np.linspace(0, 255, H)) + [np.full((H, W), 128.0)])
frame = frame.astype(np.uint8)
save_png(OUT / "template_frame.png", frame)
for i, m in enumerate(metas):
    canvas = np.zeros((H, W, 3), np.uint8)
    save_png(OUT / "expected" / f"pose_{i:02d}.png", draw_aapose_by_meta_new(canvas, AAPoseMeta.from_humanapi_meta(m)))
    x1, x2, y1, y2 = get_face_bboxes(m["keypoints_face"][:, :2], scale=1.3, image_shape=(H, W))
    boxes.append([int(x1), int(x2), int(y1), int(y2)])
    save_png(OUT / "expected" / f"face_{i:02d}.png", cv2.resize(frame[y1:y2, x1:x2], (512, 512)))

ref_meta = load_pose_metas_from_kp2ds_seq(ref, width=RW, height=RH)[0]
tpl_metas = load_pose_metas_from_kp2ds_seq(tpl, width=W, height=H)
tpl0 = load_pose_metas_from_kp2ds_seq(tpl[:1], width=W, height=H)[0]
retargeted = get_retarget_pose(tpl0, ref_meta, tpl_metas, None, None)
ret = {}
for i, pm in enumerate(retargeted):
    canvas = np.zeros((RH, RW, 3), np.uint8)
    save_png(OUT / "expected" / f"retargeted_pose_{i:02d}.png", draw_aapose_by_meta_new(canvas, pm))
    ret[f"{i}_kps_body"] = np.asarray(pm.kps_body, float)
    ret[f"{i}_kps_body_p"] = np.asarray(pm.kps_body_p, float)
    ret[f"{i}_kps_lhand"] = np.asarray(pm.kps_lhand, float)
    ret[f"{i}_kps_rhand"] = np.asarray(pm.kps_rhand, float)
np.savez(OUT / "expected" / "retargeted_metas.npz", **ret)

# Replacement mode: a person mask -> dilated mask (k=7, 3 iterations), block mask (w_len=h_len=1), background.
mask = np.zeros((H, W), np.uint8)
cv2.ellipse(mask, (W // 2, H // 2), (70, 200), 0, 0, 360, 1, -1)
cv2.circle(mask, (W // 2 + 60, H // 3), 25, 1, -1)
save_png(OUT / "person_mask.png", np.dstack([mask * 255] * 3))
_, dilated = get_mask_body_img(frame, mask, iterations=3, k=7)
aug = get_aug_mask(dilated, w_len=1, h_len=1)
save_png(OUT / "expected" / "mask_dilated.png", np.dstack([dilated * 255] * 3))
save_png(OUT / "expected" / "mask_aug.png", np.dstack([aug * 255] * 3))
save_png(OUT / "expected" / "background.png", frame * (1 - aug[:, :, None]))

sizes = {}
for w, h in ((1920, 1080), (1080, 1920), (692, 1108), (576, 1024)):
    img = np.zeros((h, w, 3), np.uint8)
    sizes[f"{w}x{h}"] = list(resize_by_area(img, 1280 * 720, divisor=16).shape[:2])
padded = padding_resize(np.asarray(frame[:, :300]), RH, RW)
save_png(OUT / "expected" / "padding_resize_frame300_to_320x480.png", padded)
(OUT / "expected" / "numbers.json").write_text(
    json.dumps(
        {
            "template_size_wh": [W, H],
            "reference_size_wh": [RW, RH],
            "frames": N,
            "face_boxes_x1_x2_y1_y2": boxes,
            "resize_by_area_1280x720_div16_hw": sizes,
        },
        indent=1,
    )
)
print("written", OUT)
