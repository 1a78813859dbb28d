"""The upstream model, assembled from explicit files, and its batched per-person step.

``build_model`` makes a PHALP instance without running ``PHALP.__init__`` (which downloads
files, builds both detectors and a renderer): it sets the config paths from ``WeightPaths``,
loads HMR2.0 from the configured checkpoint, and adds PHALP's appearance model (HMAR) and
pose predictor, exactly the parts association calls back into. The texture sampler follows
4D-Humans' track.py (HMR2 pose + a UV texture sampled through a depth render); it lives in
that script, not in the hmr2 package, so it is written here.

``PersonFeatures`` runs the per-person work for many people of many frames at once:
crop (upstream's own crop function), HMR2, texture, appearance code, 3D parameters.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import EngineUnavailable
from .convert import UPSTREAM_FOCAL, UPSTREAM_SQUARE, padding
from .options import PhalpOptions
from .precision import lower_precision
from .upstream import Upstream
from .weights import WeightPaths, trusted_checkpoint_loading

BBOX_ASPECT = (192, 256)  # track.py's expand_bbox_shape: HMR2's ViT sees 192x256 of the crop

def phalp_config(up: Upstream, options: PhalpOptions, paths: WeightPaths, device: torch.device) -> Any:
    """Upstream's FullConfig with our options and every path explicit."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(up.FullConfig)
    cfg.device = str(device)
    cfg.render.enable = False
    cfg.video.end_frame = -1  # unused: we feed frames ourselves
    p = cfg.phalp
    p.detector, p.low_th_c = options.detector, options.detection_threshold
    # Upstream's fields are integers (omegaconf refuses a float). The detector applies our
    # float thresholds itself; these only describe them, rounded up.
    p.small_w, p.small_h = math.ceil(options.min_box_width), math.ceil(options.min_box_height)
    p.n_init, p.max_age_track, p.predict = options.n_init, options.max_age, options.predict
    p.pose_distance, p.distance_type = options.pose_distance, options.distance_type
    p.hungarian_th = options.hungarian_th
    p.track_history, p.alpha, p.past_lookback = options.track_history, options.alpha, options.past_lookback
    cfg.SMPL.MODEL_PATH = str(paths.smpl_model)  # smplx accepts the .pkl file itself
    cfg.SMPL.JOINT_REGRESSOR_EXTRA = str(paths.joint_regressor)
    cfg.SMPL.TEXTURE = str(paths.texture)
    cfg.MODEL.SMPL_HEAD.SMPL_MEAN_PARAMS = str(paths.smpl_mean_params)
    cfg.hmr.hmar_path = str(paths.hmar_weights)
    cfg.pose_predictor.config_path = str(paths.pose_predictor_config)
    cfg.pose_predictor.weights_path = str(paths.pose_predictor_weights)
    cfg.pose_predictor.mean_std = str(paths.pose_mean_std)
    return cfg


@contextlib.contextmanager
def torch_hub_dir(path: str) -> Iterator[None]:
    """HMAR's ResNet-50 comes through ``torch.hub``'s cache: point it at our weights dir."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(path)
    try:
        yield
    finally:
        torch.hub.set_dir(previous)


def load_hmr2(up: Upstream, paths: WeightPaths) -> Any:
    """HMR2.0 from the configured checkpoint, without its renderers or download checks."""
    cfg = up.hmr2_get_config(str(paths.hmr2_model_config), update_cachedir=False)
    cfg.defrost()
    cfg.SMPL.MODEL_PATH = str(paths.smpl_model)
    cfg.SMPL.JOINT_REGRESSOR_EXTRA = str(paths.hmr2_joint_regressor)
    cfg.SMPL.MEAN_PARAMS = str(paths.hmr2_mean_params)
    if cfg.MODEL.BACKBONE.TYPE == "vit" and "BBOX_SHAPE" not in cfg.MODEL:
        cfg.MODEL.BBOX_SHAPE = list(BBOX_ASPECT)  # as upstream's load_hmr2
    if cfg.MODEL.BACKBONE.get("PRETRAINED_WEIGHTS"):
        cfg.MODEL.BACKBONE.PRETRAINED_WEIGHTS = ""  # a training-time file; the checkpoint has it all
    cfg.freeze()
    kwargs: dict[str, Any] = dict(strict=False, cfg=cfg, init_renderer=False, map_location="cpu")
    try:
        return up.HMR2.load_from_checkpoint(str(paths.hmr2_checkpoint), weights_only=False, **kwargs)
    except TypeError as exc:  # Lightning < 2.4 has no weights_only: trusted_checkpoint_loading covers it
        if "weights_only" not in str(exc):
            raise
        return up.HMR2.load_from_checkpoint(str(paths.hmr2_checkpoint), **kwargs)


def texture_sampler_class(up: Upstream) -> Any:
    base: Any = up.HMR2018Predictor

    class HMR2TextureSampler(base):
        """HMR2.0 for pose and camera; PHALP's HMAR for the appearance of the visible body.

        The appearance is a 4x256x256 UV texture: every texel of SMPL's UV atlas is a point
        on a mesh face (``uv_fmap`` face, ``uv_bmap`` barycentric weights); it takes the
        colour of the crop pixel it projects to, and counts as seen only where it is the
        surface nearest to the camera (compared with a depth render of the mesh).
        """

        def __init__(self, cfg: Any, hmr2: Any, uv_bmap: np.ndarray, uv_fmap: np.ndarray,
                     neural_renderer: Any) -> None:
            super().__init__(cfg)  # HMAR: appearance encoder, SMPL, and its weights
            self.model = hmr2.eval()
            self.register_buffer("uv_bmap", torch.tensor(uv_bmap, dtype=torch.float32))
            self.register_buffer("uv_fmap", torch.tensor(uv_fmap, dtype=torch.long))
            self.register_buffer("faces", torch.tensor(np.asarray(self.smpl.faces, dtype=np.int64)))
            self.depth_renderer = neural_renderer.Renderer(
                dist_coeffs=None, orig_size=int(UPSTREAM_SQUARE), image_size=int(UPSTREAM_SQUARE),
                light_intensity_ambient=1, light_intensity_directional=0, anti_aliasing=False)

        def hmr2_forward(self, image: torch.Tensor) -> dict[str, Any]:
            """HMR2.0: the backbone (in the engine's precision), its SMPL head and SMPL in fp32."""
            model = self.model
            # The ViT sees the central 192 of the 256 columns (HMR2's forward_step does the same).
            features = model.backbone(image[:, :, :, 32:-32])
            smpl_params, pred_cam, _ = model.smpl_head(features)
            batch = image.shape[0]
            smpl_params = {
                "global_orient": smpl_params["global_orient"].float().reshape(batch, -1, 3, 3),
                "body_pose": smpl_params["body_pose"].float().reshape(batch, -1, 3, 3),
                "betas": smpl_params["betas"].float().reshape(batch, -1),
            }
            pred_cam = pred_cam.float()
            focal = float(model.cfg.EXTRA.FOCAL_LENGTH)
            depth = 2 * focal / (model.cfg.MODEL.IMAGE_SIZE * pred_cam[:, 0] + 1e-9)
            cam_t = torch.stack([pred_cam[:, 1], pred_cam[:, 2], depth], dim=-1)
            vertices = model.smpl(**smpl_params, pose2rot=False).vertices
            return {"pred_smpl_params": smpl_params, "pred_cam": pred_cam, "pred_cam_t": cam_t,
                    "pred_vertices": vertices}

        def forward(self, x: torch.Tensor) -> dict[str, Any]:
            image, mask = x[:, :3], x[:, 3].clamp(0, 1)
            out = self.hmr2_forward(image)
            vertices = out["pred_vertices"] + out["pred_cam_t"][:, None, :]  # crop camera frame
            batch, device = x.shape[0], x.device

            in_atlas = self.uv_fmap >= 0
            texel_face_vertices = vertices[:, self.faces[self.uv_fmap[in_atlas]]]  # B, N, 3 corners, 3
            texels = torch.einsum("bnkc,nk->bnc", texel_face_vertices, self.uv_bmap[in_atlas])
            # crop camera: focal 5000 on 256 px -> normalised coordinates in [-1, 1]
            texel_xy = (UPSTREAM_FOCAL / (UPSTREAM_SQUARE / 2)) * texels[..., :2] / texels[..., 2:3]
            texel_depth = texels[..., 2]

            K = torch.tensor([[UPSTREAM_FOCAL, 0, UPSTREAM_SQUARE / 2], [0, UPSTREAM_FOCAL, UPSTREAM_SQUARE / 2],
                              [0, 0, 1]], device=device)[None]
            R = torch.eye(3, device=device)[None]
            t = torch.zeros(1, 3, device=device)
            faces = self.faces[None].expand(batch, -1, -1).int()
            depth_map = self.depth_renderer(vertices, faces, mode="depth", K=K, R=R, t=t)  # B, 256, 256

            grid = texel_xy[:, None]  # B, 1, N, 2
            surface_depth = F.grid_sample(depth_map[:, None], grid, align_corners=False)[:, 0, 0]  # B, N
            rgba = F.grid_sample(torch.cat([image, mask[:, None]], 1), grid, align_corners=False)[:, :, 0]  # B,4,N
            hidden = texel_depth > surface_depth + 1e-4
            alpha = rgba[:, 3]
            alpha[hidden] = 0

            uv_image = torch.zeros((batch, 4) + tuple(self.uv_fmap.shape), dtype=torch.float32, device=device)
            uv_image[:, :, in_atlas] = rgba
            return {"uv_image": uv_image, "uv_vector": self.hmar_old.process_uv_image(uv_image),
                    "pose_smpl": out["pred_smpl_params"], "pred_cam": out["pred_cam"],
                    "pred_vertices": out["pred_vertices"]}

    return HMR2TextureSampler


def pose_predictor_class(up: Upstream) -> Any:
    base: Any = up.Pose_transformer_v2

    class DevicePosePredictor(base):
        """Upstream's pose predictor (PHALP's ``P``), on the device the engine runs on.

        Upstream's ``predict_next`` moves its inputs with a hard-coded ``.cuda()``; this one
        builds the same inputs, on the CPU as upstream does, and moves them to the module's
        device. Its weights are loaded in full: upstream's ``load_weights`` replaces every
        "encoder." in the key names, so ``pose_shape_encoder`` never loads and keeps a random
        initialisation that depends on the process's RNG history (results would then differ
        between a replica and the process that restores its state).
        """

        def load_weights(self, path: str) -> None:
            prefix = "encoder."
            state = torch.load(path, map_location="cpu")["state_dict"]
            try:
                self.encoder.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                             strict=True)
            except RuntimeError as exc:  # missing, unexpected or misshapen weights
                raise EngineUnavailable(f"the pose predictor weights {path} do not fit the model its config "
                                        f"describes: {exc}", engine="phalp") from None

        def predict_next(self, en_pose: torch.Tensor, en_data: Any, en_time: torch.Tensor,
                         time_to_predict: Any) -> torch.Tensor:
            length = self.cfg.frame_length
            people = en_pose.shape[0]
            pose_shape = torch.zeros(people, length, 1, 229)
            has_detection = torch.zeros(people, length, 1, 1)
            # each history entry goes to its slot (frames since the track's first entry,
            # capped at the last slot; a later entry overwrites an earlier one there)
            slots = torch.clamp(en_time - en_time[:, :1], max=length - 1).long()
            everyone = torch.arange(people)
            for step in range(en_time.shape[1]):
                pose_shape[everyone, slots[:, step], 0] = en_pose[:, step].float()
                has_detection[everyone, slots[:, step], 0] = 1
            device = self.mean.device
            inputs = {"pose_shape": (pose_shape - self.mean_[:, :, None, :]) / (self.std_[:, :, None, :] + 1e-10),
                      "has_detection": has_detection, "mask_detection": torch.zeros(people, length, 1, 1)}
            inputs = {k: v.to(device) for k, v in inputs.items()}
            output, _ = self.encoder(inputs, self.cfg.mask_type_test)
            decoded = self.readout_pose(output[:, self.cfg.max_people:, :])
            # Upstream reads every person's prediction at the FIRST person's last slot (its
            # ``t_end += time_to_predict + 1`` extends a list instead of offsetting it);
            # kept, so that association equals upstream's.
            slot = min(int(slots[0, -1]), length - 1)
            return decoded["pose_camera"][:, slot, 0, :]

    return DevicePosePredictor


def service_model_class(up: Upstream) -> Any:
    base: Any = up.PHALP

    class ServiceModel(base):
        """PHALP with the parts association needs, built from explicit files.

        Association calls back into ``forward_for_tracking`` (pose predictor),
        ``get_pose_distance`` and ``get_uv_distance`` (appearance encoder).
        """

        def __init__(self, cfg: Any, hmar: Any, device: torch.device) -> None:
            torch.nn.Module.__init__(self)  # not PHALP.__init__: no downloads, detectors or renderer
            self.cfg = cfg
            self.device = device
            self.HMAR = hmar
            self.pose_predictor = pose_predictor_class(up)(cfg, self)
            self.pose_predictor.load_weights(cfg.pose_predictor.weights_path)

        def get_uv_distance(self, t_uv: np.ndarray, d_uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.float64]:
            """Upstream's texture distance inputs, on this model's device (upstream: ``.cuda()``).

            Both textures keep only the texels seen in both; returns their appearance codes
            (scaled by 1e-3 as upstream) and the shared fraction of the atlas.
            """
            track = torch.from_numpy(t_uv).to(self.device, torch.float32).clone()
            detection = torch.from_numpy(d_uv).to(self.device, torch.float32).clone()
            seen_by_both = (track[3:] > 0.5) & (detection[3:] > 0.5)
            unseen = ~seen_by_both.repeat(4, 1, 1)
            track[unseen] = 0.0
            detection[unseen] = 0.0
            with torch.no_grad():
                track_code = self.HMAR.autoencoder_hmar(track[None], en=True).view(-1) / 10 ** 3
                detection_code = self.HMAR.autoencoder_hmar(detection[None], en=True).view(-1) / 10 ** 3
            shared = seen_by_both.sum().item() / (2 * seen_by_both.shape[-1] * seen_by_both.shape[-2])
            return track_code.cpu().numpy(), detection_code.cpu().numpy(), np.float64(shared)

    return ServiceModel


def build_model(up: Upstream, neural_renderer: Any, options: PhalpOptions, paths: WeightPaths,
                device: torch.device) -> Any:
    """The ready model (eval mode, on ``device``)."""
    cfg = phalp_config(up, options, paths, device)
    trusted = [paths.hmr2_checkpoint, paths.hmar_weights, paths.pose_predictor_weights, paths.resnet50_imagenet]
    with trusted_checkpoint_loading(trusted), torch_hub_dir(str(paths.resnet50_imagenet.parent.parent)):
        hmr2 = load_hmr2(up, paths)
        lower_precision(hmr2, "backbone", options.precision)
        sampler = texture_sampler_class(up)(cfg, hmr2, np.load(paths.uv_bmap), np.load(paths.uv_fmap),
                                            neural_renderer)
        model = service_model_class(up)(cfg, sampler, device)
    return model.to(device).eval()


class PersonFeatures:
    """Per-person features for a list of (frame, box, mask) items, computed in batches.
    ``vertices``: each record also carries HMR2's ``pred_vertices`` (float16, relative to the
    camera translation, as the joints), which the track's history then keeps like the rest."""

    def __init__(self, up: Upstream, model: Any, frame_height: int, frame_width: int, vertices: bool = False) -> None:
        self.up, self.model = up, model
        self.vertices = vertices
        self.side, self.left, self.top = padding(frame_height, frame_width)
        self.height, self.width = frame_height, frame_width
        # upstream's 256-px padded square: position/size in it = frame pixels x ratio (+ padding)
        self.ratio = UPSTREAM_SQUARE / self.side

    def __call__(self, frames_bgr: list[np.ndarray], items: list[tuple[int, np.ndarray, np.ndarray]],
                 batch: slice) -> list[dict[str, Any]]:
        """Features of ``items[batch]``; an item is (frame position, box xyxy, mask)."""
        model = self.model
        crops, centres, scales, rles = [], [], [], []
        for position, box, mask in items[batch]:
            box_pad = self.up.expand_bbox_to_aspect_ratio(box.astype(np.float64), BBOX_ASPECT)
            crop, _, _, rle, centre_pad, scale_pad = model.get_croped_image(frames_bgr[position], box, box_pad, mask)
            crops.append(crop)
            centres.append(centre_pad)
            scales.append(scale_pad)
            rles.append(rle)
        device = model.device
        with torch.no_grad():
            x = torch.stack(crops).to(device, non_blocking=True)
            out = model.HMAR(x)
            appearance = model.HMAR.autoencoder_hmar(out["uv_vector"], en=True)
            appearance = appearance.view(appearance.shape[0], -1)
            centre = (np.asarray(centres) + np.array([self.left, self.top])) * self.ratio
            scale = np.max(np.asarray(scales), axis=1, keepdims=True) * self.ratio
            smpl, joints_2d, joints_3d, cam_t = model.HMAR.get_3d_parameters(
                out["pose_smpl"], out["pred_cam"], center=centre, img_size=int(UPSTREAM_SQUARE), scale=scale)
        count = x.shape[0]
        joints_2d = joints_2d.reshape(count, -1) / UPSTREAM_SQUARE
        location = torch.cat([joints_2d, cam_t, cam_t, cam_t], 1)
        # One device-to-host copy per output for the whole batch (not one per person: each
        # copy waits for the GPU); every record then gets its own rows.
        host = {name: value.cpu().numpy() for name, value in {
            "appe": appearance, "loca": location, "uv": out["uv_vector"], "camera": cam_t,
            "camera_bbox": out["pred_cam"], "3d_joints": joints_3d, "2d_joints": joints_2d,
            **{"smpl." + k: v.float() for k, v in smpl.items()}}.items()}
        if self.vertices:
            host["vertices"] = out["pred_vertices"].cpu().numpy().astype(np.float16)
        result = []
        for i in range(count):
            row = {name: np.array(value[i]) for name, value in host.items()}
            smpl_i = {k[len("smpl."):]: row.pop(k) for k in list(row) if k.startswith("smpl.")}
            if model.cfg.phalp.pose_distance == "smpl":
                pose = self.up.smpl_to_pose_camera_vector(smpl_i, torch.from_numpy(row["camera"]))[0]
            else:
                pose = row["3d_joints"].reshape(-1)
            result.append({
                **row, "pose": np.asarray(pose), "smpl": smpl_i, "center": centres[i], "scale": scales[i],
                "embedding": torch.cat([torch.from_numpy(row["appe"]), torch.as_tensor(pose),
                                        torch.from_numpy(row["loca"])]),
                "mask": rles[i],
            })
        return result
