#!/usr/bin/env python3
"""Rebuild the real-fall development set from public git snapshots, outside this repository.

The clips belong to their authors and state no licence: they are read for
evaluation only and never committed here. This script reads them from git
snapshots of the three public repositories (pinned commits), checks their
sha256 against the digests below, and writes one folder per set that
`edgepose eval-falls` reads:

    OUT/upfall-video/   66 UP-Fall videos of subject 1 (640x480, 18 fps), as they are:
                        fall/ (activities 1-5, 30 clips) and adl/ (6-11, 36 clips)
    OUT/kaggle/         ~7,000 COCO-17 keypoint sequences (fall/, adl/), one label
                        per clip, as poses recordings
    OUT/upfall-adl-long/ the 36 daily-activity videos back to back, 12 dark seconds
                        apart, one 13.5-minute video per camera (10.1 minutes of
                        activity; needs PyAV): false alarms in ordinary activity
    OUT/upfall-impact/  (only with --sets upfall-impact) 82 UP-Fall fall sequences
                        (MediaPipe skeletons) with a per-frame before/after-impact
                        label, as recordings. Not a default set: their rows are not
                        in time order (the hips jump between standing and lying
                        height on 18% of row-to-row steps, median over clips,
                        against 0% in the Kaggle sequences; some clips follow the
                        text order of frame numbers, 1, 10, 100, 11, ...), so
                        neither a detector nor a time to alert can be scored on them.

Each set folder holds a ``clips.json`` (path, label, fall_at_s, note) and the
clips. A recording is what ``edgepose run --record`` writes: one ``poses``
message (v2) per line, so `edgepose replay` and `edgepose eval-falls` read it.

    python3 tools/fall_devset.py [--out ~/.cache/edgepose/fall-dev] \\
        [--git taufeeque9/HumanFallDetection=PATH ...]

``--git OWNER/NAME=PATH`` names a local clone (or bare git directory) holding
the pinned commit; without it the repository is cloned from GitHub into
``OUT/.git-cache``. Python 3.11 standard library and git; PyAV for upfall-adl-long.

Conversions (stated, since they shape what the detector sees):
- Kaggle keypoints (pixels, YOLO-style confidences) carry no frame size and no
  frame rate: the frame is the smallest common video size that holds every
  keypoint of the clip, and the clip is taken as 30 fps. A frame number that is
  missing from a clip becomes a frame with nobody in it.
- UP-Fall MediaPipe skeletons (33 landmarks, x and y in 0..1 of the 640x480
  frame) map to the 17 COCO parts; a landmark inside the frame gets score 0.9,
  one outside it 0.05 (MediaPipe extrapolates there). 18 fps, UP-Fall's rate.
  The impact time is the first frame labelled 1.
- The UP-Fall videos carry no impact time; `UPFALL_IMPACT_S` gives one per
  trial, labelled by eye (see there).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

PARTS = ("nose", "leftEye", "rightEye", "leftEar", "rightEar", "leftShoulder", "rightShoulder",
         "leftElbow", "rightElbow", "leftWrist", "rightWrist", "leftHip", "rightHip", "leftKnee",
         "rightKnee", "leftAnkle", "rightAnkle")


@dataclass(frozen=True)
class Source:
    repo: str  # owner/name on GitHub
    commit: str
    pattern: str  # regular expression over paths in the commit
    files: int  # how many paths match
    sha256: str  # of the sorted "<sha256 of file>  <path>" lines of every match


SOURCES = {
    "upfall-video": Source(
        "taufeeque9/HumanFallDetection", "c70bda91fc1e6b427fa4452db74e70c16cdfe1f4",
        r"dataset/Activity\d+/Subject1/Trial\dCam\d\.mp4", 66,
        "7a31635824f28d4bb88790ee8aa78a6ce6cb9bfd1c6ffec8d5322bdef9086d15"),
    "kaggle": Source(
        "monjar/Fall-detection-study", "193ca2914e742c556f2edb4a606b14e11135d6d1",
        r"data/KaggleRealDataset/(Fall|No_Fall)/Keypoints_CSV/[^/]+\.csv", 6988,
        "24975665fe29359fa0a4364792cbbc13777b7b9039f1a47d1883b676b29187e0"),
    "upfall-impact": Source(
        "Tresor-Koffi/3D_skeletons-UP-Fall-Dataset", "0c01b25d324536ff10f2d5116feed5846f4513ea",
        r"SUBJECT\d+\.zip", 5,
        "aadbfc4b459fe9524b270aa9c86ad5bf60e9747293262145ad7ce2e964fb142a"),
}

#: UP-Fall's activities (Martinez-Villasenor et al., 2019): 1-5 falls, 6-11 daily activities.
UPFALL_ACTIVITIES = {
    1: "falling forward using hands", 2: "falling forward using knees", 3: "falling backwards",
    4: "falling sideward", 5: "falling sitting in empty chair", 6: "walking", 7: "standing",
    8: "sitting", 9: "picking up an object", 10: "jumping", 11: "laying",
}
#: When the body comes to rest on the floor (mattress) in each fall trial of subject 1,
#: seconds from the clip's start, by (activity, trial): labelled by eye from frame
#: strips 0.25 s apart (the first strip frame with the body lying, less half a step
#: where the previous frame showed it on its way), so good to about 0.15 s. Both
#: cameras film the same trial and share the time.
UPFALL_IMPACT_S = {
    (1, 1): 3.15, (1, 2): 1.4, (1, 3): 1.4,
    (2, 1): 1.4, (2, 2): 1.6, (2, 3): 1.5,
    (3, 1): 1.45, (3, 2): 1.45, (3, 3): 1.2,
    (4, 1): 1.0, (4, 2): 1.2, (4, 3): 1.2,
    (5, 1): 1.45, (5, 2): 1.5, (5, 3): 1.6,
}
UPFALL_FPS = 18.0
UPFALL_SIZE = (640, 480)
KAGGLE_FPS = 30.0
#: Common video frame sizes, smallest first: a Kaggle clip gets the first that holds it.
FRAME_SIZES = ((640, 480), (480, 640), (1280, 720), (720, 1280), (1920, 1080), (1080, 1920),
               (2560, 1440), (1440, 2560), (3840, 2160), (2160, 3840))
#: MediaPipe Pose landmark index of each COCO part, in PARTS order.
MEDIAPIPE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
KAGGLE_PARTS = {name.replace(" ", "").lower(): i for i, name in enumerate(
    ("Nose", "Left Eye", "Right Eye", "Left Ear", "Right Ear", "Left Shoulder", "Right Shoulder",
     "Left Elbow", "Right Elbow", "Left Wrist", "Right Wrist", "Left Hip", "Right Hip", "Left Knee",
     "Right Knee", "Left Ankle", "Right Ankle"))}
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


# --- reading the snapshots -----------------------------------------------------------


class Snapshot:
    """Blobs of one commit of a git repository (git cat-file, no work tree)."""

    def __init__(self, git_dir: Path, commit: str):
        self.git = ["git", f"--git-dir={git_dir}"]
        self.commit = commit
        if subprocess.run([*self.git, "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True).returncode != 0:
            raise SystemExit(f"{git_dir}: commit {commit} is not there")

    def paths(self, pattern: str) -> list[tuple[str, str]]:
        """(path, blob id) of every file whose path matches `pattern`, sorted by path."""
        out = subprocess.run([*self.git, "ls-tree", "-r", "-z", self.commit], capture_output=True,
                             check=True).stdout.decode()
        rx = re.compile(pattern)
        found = []
        for entry in filter(None, out.split("\0")):
            meta, path = entry.split("\t", 1)
            if meta.split()[1] == "blob" and rx.fullmatch(path):
                found.append((path, meta.split()[2]))
        return sorted(found)

    def blobs(self, ids: list[str]) -> Iterator[bytes]:
        """The contents of `ids`, in order (one git process for all of them)."""
        proc = subprocess.Popen([*self.git, "cat-file", "--batch"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for blob in ids:
                proc.stdin.write(blob.encode() + b"\n")
                proc.stdin.flush()
                header = proc.stdout.readline().split()
                if len(header) != 3:
                    raise SystemExit(f"blob {blob} is missing from the snapshot ({b' '.join(header).decode()})")
                size = int(header[2])
                data = proc.stdout.read(size)
                proc.stdout.read(1)  # the newline after each blob
                yield data
        finally:
            proc.stdin.close()
            proc.wait()


def open_snapshot(name: str, git_dirs: dict[str, Path], cache: Path) -> Snapshot:
    source = SOURCES[name]
    git_dir = git_dirs.get(source.repo)
    if git_dir is None:
        git_dir = cache / (source.repo.replace("/", "+") + ".git")
        if not git_dir.exists():
            print(f"cloning https://github.com/{source.repo} into {git_dir}", file=sys.stderr)
            subprocess.run(["git", "clone", "--bare", "--quiet", f"https://github.com/{source.repo}",
                            str(git_dir)], check=True)
    elif (git_dir / ".git").is_dir():
        git_dir = git_dir / ".git"
    return Snapshot(git_dir, source.commit)


def checked_files(name: str, snapshot: Snapshot) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of every file of source `name`, after checking the whole set's
    digest: nothing is written from a snapshot whose files differ from the pinned ones."""
    source = SOURCES[name]
    entries = snapshot.paths(source.pattern)
    if len(entries) != source.files:
        raise SystemExit(f"{name}: {len(entries)} files match in {source.repo}@{source.commit[:12]}, "
                         f"expected {source.files}")
    digest = hashlib.sha256()
    for (path, _), data in zip(entries, snapshot.blobs([b for _, b in entries])):
        digest.update(f"{hashlib.sha256(data).hexdigest()}  {path}\n".encode())
    if digest.hexdigest() != source.sha256:
        raise SystemExit(f"{name}: the files of {source.repo}@{source.commit[:12]} have sha256 "
                         f"{digest.hexdigest()}, expected {source.sha256}: not building from them")
    for (path, _), data in zip(entries, snapshot.blobs([b for _, b in entries])):
        yield path, data


# --- poses recordings ------------------------------------------------------------------


def poses_message(seq: int, t: float, width: int, height: int, keypoints: list | None) -> str:
    """One v2 poses message: `keypoints` (17 of (x, y, score) in frame pixels) or None."""
    poses = []
    if keypoints is not None:
        ok = [(x, y) for x, y, s in keypoints if s > 0]
        xs, ys = [p[0] for p in ok] or [0.0], [p[1] for p in ok] or [0.0]
        box = [max(0.0, min(xs) / width), max(0.0, min(ys) / height),
               min(1.0, max(xs) / width), min(1.0, max(ys) / height)]
        poses.append({
            "id": 1,
            "score": round(sum(s for _, _, s in keypoints) / len(keypoints), 4),
            "box": [round(v, 4) for v in box],
            "keypoints": {part: {"x": round(x / width, 5), "y": round(y / height, 5), "score": round(s, 4)}
                          for part, (x, y, s) in zip(PARTS, keypoints)},
        })
    ts = (EPOCH + timedelta(seconds=t)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"v": 2, "node": "devset", "ts": ts, "frame": seq, "width": width, "height": height,
                       "model": "recorded", "inference_ms": 0.0, "person_count": len(poses),
                       "poses": poses}, separators=(",", ":"))


def kaggle_recording(data: bytes) -> tuple[str, int]:
    """A Kaggle keypoint CSV (Frame, Keypoint, X, Y, Confidence) as a recording; (text, frames)."""
    frames: dict[int, list] = {}
    for row in csv.DictReader(io.StringIO(data.decode("utf-8-sig"))):
        part = KAGGLE_PARTS.get(row["Keypoint"].replace(" ", "").lower())
        if part is None:
            continue
        kps = frames.setdefault(int(row["Frame"]), [(0.0, 0.0, 0.0)] * len(PARTS))
        kps[part] = (float(row["X"]), float(row["Y"]), float(row["Confidence"]))
    if not frames:
        return "", 0
    max_x = max(x for kps in frames.values() for x, _, _ in kps)
    max_y = max(y for kps in frames.values() for _, y, _ in kps)
    width, height = next(((w, h) for w, h in FRAME_SIZES if max_x < w and max_y < h),
                         (math.ceil(max_x + 1), math.ceil(max_y + 1)))
    first, last = min(frames), max(frames)
    lines = [poses_message(n - first, (n - first) / KAGGLE_FPS, width, height, frames.get(n))
             for n in range(first, last + 1)]
    return "\n".join(lines) + "\n", len(lines)


def mediapipe_recording(data: bytes) -> tuple[str, float]:
    """A Tresor-Koffi UP-Fall CSV (33 x, y, z landmarks + LABEL per frame) as a recording;
    (text, impact time in s)."""
    width, height = UPFALL_SIZE
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1:]
    lines, impact = [], None
    for seq, row in enumerate(rows):
        values = [float(v) for v in row[:-1]]
        keypoints = []
        for landmark in MEDIAPIPE_TO_COCO:
            x, y = values[3 * landmark], values[3 * landmark + 1]
            inside = 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
            keypoints.append((x * width, y * height, 0.9 if inside else 0.05))
        if impact is None and row[-1].strip() == "1":
            impact = seq / UPFALL_FPS
        lines.append(poses_message(seq, seq / UPFALL_FPS, width, height, keypoints))
    if impact is None:
        raise SystemExit("an UP-Fall impact sequence without an impact label")
    return "\n".join(lines) + "\n", impact


# --- the sets ------------------------------------------------------------------------------


def write_set(folder: Path, name: str, clips: list[dict], about: str) -> None:
    source = SOURCES[SOURCE_OF.get(name, name)]
    (folder / "clips.json").write_text(json.dumps({
        "set": name, "about": about,
        "source": f"https://github.com/{source.repo} at {source.commit}",
        "licence": "not stated by the source: evaluation only, do not redistribute",
        "clips": clips}, indent=1) + "\n")
    falls = sum(c["label"] == "fall" for c in clips)
    print(f"{name}: {len(clips)} clips ({falls} falls, {len(clips) - falls} daily activities)")


def build_upfall_video(snapshot: Snapshot, folder: Path) -> None:
    clips = []
    for path, data in checked_files("upfall-video", snapshot):
        activity, trial, cam = map(int, re.findall(r"\d+", path)[0:1] + re.findall(r"\d+", path)[2:4])
        label = "fall" if activity <= 5 else "adl"
        out = Path(label) / f"A{activity:02d}-T{trial}-C{cam}.mp4"
        (folder / out).parent.mkdir(parents=True, exist_ok=True)
        (folder / out).write_bytes(data)
        clips.append({"path": str(out), "label": label, "fall_at_s": UPFALL_IMPACT_S.get((activity, trial)),
                      "note": f"UP-Fall subject 1, activity {activity} ({UPFALL_ACTIVITIES[activity]}), "
                              f"trial {trial}, camera {cam}"
                              + (" (a second person sits on the right throughout)" if cam == 2 else ""),
                      "people": 1 if cam == 1 else 2})
    write_set(folder, "upfall-video", sorted(clips, key=lambda c: c["path"]),
              "UP-Fall staged falls and daily activities of subject 1, two cameras; the clips "
              "end a few seconds after the fall: score them with the last frame held")


def build_upfall_impact(snapshot: Snapshot, folder: Path) -> None:
    clips = []
    (folder / "fall").mkdir(parents=True, exist_ok=True)
    for path, data in checked_files("upfall-impact", snapshot):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in sorted(archive.namelist()):
                if not member.lower().endswith(".csv"):
                    continue
                stem = Path(member).stem
                m = re.fullmatch(r"C?(\d?)S(\d+)_?A(\d+)_?T(\d+)", stem)
                if m is None:
                    raise SystemExit(f"{path}: unexpected member {member}")
                cam, subject, activity, trial = m.groups()
                text, impact = mediapipe_recording(archive.read(member))
                out = Path("fall") / f"S{int(subject):02d}-A{int(activity):02d}-T{trial}-C{cam or 'x'}.jsonl"
                (folder / out).write_text(text)
                clips.append({"path": str(out), "label": "fall", "fall_at_s": round(impact, 3),
                              "note": f"UP-Fall subject {subject}, activity {activity} "
                                      f"({UPFALL_ACTIVITIES[int(activity)]}), trial {trial}, camera {cam or '?'}"})
    write_set(folder, "upfall-impact", sorted(clips, key=lambda c: c["path"]),
              "UP-Fall falls as MediaPipe skeletons with a per-frame before/after-impact label "
              "(18 fps, 100 frames each). WARNING: the rows are not in time order (see "
              "tools/fall_devset.py): for inspection only, not for scoring")


def build_kaggle(snapshot: Snapshot, folder: Path) -> None:
    clips = []
    for sub in ("fall", "adl"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for path, data in checked_files("kaggle", snapshot):
        label = "fall" if "/Fall/" in path else "adl"
        text, frames = kaggle_recording(data)
        if not frames:
            continue  # a clip in which nobody was found: nothing to replay
        out = Path(label) / (Path(path).stem.removesuffix("_keypoints") + ".jsonl")
        (folder / out).write_text(text)
        clips.append({"path": str(out), "label": label, "fall_at_s": UPFALL_IMPACT_S.get((activity, trial)), "note": Path(path).name})
    write_set(folder, "kaggle", clips,
              "Kaggle real fall/no-fall keypoint sequences (COCO-17), one label per clip; frame "
              "rate unknown, taken as 30 fps")


#: Dark seconds between two activities of the long clips: longer than any track or fall
#: history lasts, as if the person left the room, so a cut from standing to lying is not
#: a fall the clips never showed.
GAP_S = 12.0


def build_upfall_adl_long(snapshot: Snapshot, folder: Path) -> None:
    """The daily-activity videos of each camera back to back (GAP_S apart), one long clip
    per camera: false alarms per hour of normal activity, and what long running does to
    tracks. Needs PyAV and numpy (the edgepose venv has them)."""
    import av  # only this set needs them
    import numpy as np

    by_camera: dict[int, list[tuple[str, bytes]]] = {}
    for path, data in checked_files("upfall-video", snapshot):
        activity, _, trial, cam = (int(v) for v in re.findall(r"\d+", path)[:4])
        if activity > 5:
            by_camera.setdefault(cam, []).append((f"{activity:02d}-{trial}", data))
    clips = []
    (folder / "adl").mkdir(parents=True, exist_ok=True)
    for cam, parts in sorted(by_camera.items()):
        out = Path("adl") / f"C{cam}-all-daily-activities.mp4"
        frames = 0
        with av.open(str(folder / out), "w") as target:
            stream = target.add_stream("mpeg4", rate=int(UPFALL_FPS))
            stream.width, stream.height = UPFALL_SIZE
            stream.pix_fmt, stream.bit_rate = "yuv420p", 2_000_000
            gap = av.VideoFrame.from_ndarray(np.zeros((UPFALL_SIZE[1], UPFALL_SIZE[0], 3), np.uint8),
                                             format="rgb24")
            for n, (_, data) in enumerate(sorted(parts)):
                for _ in range(int(GAP_S * UPFALL_FPS) if n else 0):  # the person has left the room
                    target.mux(stream.encode(gap))
                    frames += 1
                with av.open(io.BytesIO(data)) as source:
                    for frame in source.decode(video=0):
                        image = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                        target.mux(stream.encode(image))
                        frames += 1
            target.mux(stream.encode(None))
        clips.append({"path": str(out), "label": "adl", "fall_at_s": None,
                      "note": f"UP-Fall subject 1, activities 6-11 (walking, standing, sitting, picking up, "
                              f"jumping, laying), three trials each, camera {cam}, {GAP_S:g} s apart: "
                              f"{frames / UPFALL_FPS / 60:.1f} min", "people": 1 if cam == 1 else 2})
    write_set(folder, "upfall-adl-long", clips,
              "UP-Fall daily activities of subject 1 back to back per camera: false alarms per hour")


BUILDERS = {"upfall-video": build_upfall_video, "kaggle": build_kaggle,
            "upfall-adl-long": build_upfall_adl_long, "upfall-impact": build_upfall_impact}
#: Sets derived from another set's source.
SOURCE_OF = {"upfall-adl-long": "upfall-video"}
#: Built unless --sets says otherwise (upfall-impact only on request: see the module doc).
DEFAULT_SETS = ("upfall-video", "kaggle", "upfall-adl-long")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("~/.cache/edgepose/fall-dev"),
                        help="folder to build the sets in, outside the repo (default: %(default)s, where "
                             "the tests look; or fall-dev beside the checkout, or $EDGEPOSE_FALL_DEV)")
    parser.add_argument("--git", action="append", default=[], metavar="OWNER/NAME=PATH",
                        help="a local clone or git directory of a source repository")
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS),
                        help=f"which sets, of {', '.join(BUILDERS)} (default: {','.join(DEFAULT_SETS)})")
    parser.add_argument("--print-digests", action="store_true",
                        help="print each source's digest as found (to pin a new commit), build nothing")
    args = parser.parse_args(argv)
    git_dirs = {}
    for item in args.git:
        repo, sep, path = item.partition("=")
        if not sep or repo not in {s.repo for s in SOURCES.values()}:
            parser.error(f"--git {item}: expected OWNER/NAME=PATH with one of "
                         f"{', '.join(s.repo for s in SOURCES.values())}")
        git_dirs[repo] = Path(path).expanduser()
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        parser.error(f"--sets: unknown {', '.join(unknown)} (known: {', '.join(BUILDERS)})")
    repo_root = Path(__file__).resolve().parents[1]
    out = args.out.expanduser().resolve()
    if out == repo_root or repo_root in out.parents:
        parser.error("--out must be outside the repository: the clips are not ours to commit")
    for name in names:
        snapshot = open_snapshot(SOURCE_OF.get(name, name), git_dirs, out / ".git-cache")
        if args.print_digests:
            digest = hashlib.sha256()
            entries = snapshot.paths(SOURCES[SOURCE_OF.get(name, name)].pattern)
            for (path, _), data in zip(entries, snapshot.blobs([b for _, b in entries])):
                digest.update(f"{hashlib.sha256(data).hexdigest()}  {path}\n".encode())
            print(f"{name}: {len(entries)} files, sha256 {digest.hexdigest()}")
            continue
        folder = out / name
        if folder.exists() and not (folder / "clips.json").is_file():
            raise SystemExit(f"{folder} exists and was not built by this script: not replacing it")
        partial = out / f".{name}.partial"  # built beside, then put in place whole
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        BUILDERS[name](snapshot, partial)
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
        print(f"  in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
