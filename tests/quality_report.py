"""`python -m tests.quality_report`: the engine's quality figures, frame strips and a summary.

Renders every mode at 480p and 720p on the synthetic inputs of
``tests.quality.inputs``, measures each output (``tests.quality.scenarios``)
and writes to ``bench-report/``:

* ``quality.json``: every figure, per render, with the verdict of each rule;
* ``strip-<mode>.png``: sampled frames around the face(s) with the audio
  envelope and the measured mouth opening plotted under them;
* ``QUALITY.md``: a short report with the tables and the strips;
* the articulation report (``tests.quality.articulation``): sentences spoken by
  espeak-ng (English and Korean) with its phoneme timings as ground truth, the
  share of m/b/p on which the lips close, of open vowels on which they open, and
  rounded against spread mouth width, for the engine and for the loudness-only
  drive it replaced, with ``strip-articulation-<voice>.png``. Skipped when
  libespeak-ng is not installed (``apt-get install espeak-ng``).

Part of ``make bench``; it takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference_service.engine import LipsyncEngine
from inference_service.engine.animator import BuiltinAnimator
from tests.quality import articulation, rules, scenarios, speech, strips
from tests.quality.scenarios import ModeQuality

HEIGHTS = (480, 720)
STRIP_HEIGHT = 720
# Extra voice pairs for multi (meanwhile, 6 s each): how much sync varies with the voice.
ROBUSTNESS_SEEDS = ((31, 32), (33, 34), (35, 36))


@dataclass
class Run:
    name: str
    height: int
    quality: ModeQuality | None = None
    error: str | None = None
    check_psnr: bool = False

    def record(self) -> dict[str, Any]:
        if self.quality is None:
            return {"name": self.name, "height": self.height, "error": self.error}
        verdicts = rules.verdicts(self.quality, check_psnr=self.check_psnr)
        return {
            "name": self.name,
            **self.quality.summary(),
            "verdicts": [
                {"rule": v.rule, "figure": v.figure, "passed": v.passed} for v in verdicts
            ],
        }


def _attempt(name: str, height: int, render: Callable[[], ModeQuality], **extra: Any) -> Run:
    started = time.perf_counter()
    try:
        run = Run(name, height, quality=render(), **extra)
    except Exception as exc:  # one broken mode must not hide the others' figures
        traceback.print_exc()
        run = Run(name, height, error=f"{type(exc).__name__}: {exc}", **extra)
    print(f"{name} {height}p: {time.perf_counter() - started:.1f} s", flush=True)
    return run


def collect(engine: LipsyncEngine, work: Path, heights: tuple[int, ...]) -> list[Run]:
    runs: list[Run] = []
    for height in heights:
        runs.append(
            _attempt(
                "image",
                height,
                lambda h=height: scenarios.run_image(engine, work / "image", h, idle_motion=None),
            )
        )
        runs.append(
            _attempt(
                "image-no-idle",
                height,
                lambda h=height: scenarios.run_image(engine, work / "image", h, idle_motion=False),
                check_psnr=True,
            )
        )
        if scenarios.engine_supports(engine, "render_video"):
            runs.append(
                _attempt("video", height, lambda h=height: scenarios.run_video(engine, work, h))
            )
        else:
            runs.append(Run("video", height, error="render_video is not implemented"))
        for order in scenarios.ORDERS:
            if not scenarios.engine_supports(engine, "render_multi"):
                runs.append(Run(f"multi-{order}", height, error="render_multi is not implemented"))
                continue
            runs.append(
                _attempt(
                    f"multi-{order}",
                    height,
                    lambda h=height, o=order: scenarios.run_multi(
                        engine, work / "multi", h, o, idle_motion=False
                    ),
                    check_psnr=True,
                )
            )
    return runs


def robustness(engine: LipsyncEngine, work: Path) -> dict[str, Any] | None:
    """Sync r per person of multi (meanwhile) over more voice pairs, 6 s each, at 480p."""
    if not scenarios.engine_supports(engine, "render_multi"):
        return None
    figures: dict[str, list[float]] = {"left": [], "right": []}
    for seeds in ROBUSTNESS_SEEDS:
        quality = scenarios.run_multi(
            engine,
            work / f"voices-{seeds[0]}",
            480,
            "meanwhile",
            idle_motion=False,
            seconds=(6.0, 6.0),
            seeds=seeds,
        )
        for person in quality.people:
            figures[person.name].append(person.sync.best_r)
    return {
        "multi_meanwhile_480p_voice_seeds": [list(seeds) for seeds in ROBUSTNESS_SEEDS],
        "sync_best_r": figures,
        "below_rule": sum(r < rules.SYNC_MIN_R for values in figures.values() for r in values),
    }


STRIPS = {
    "image": "image",
    "video": "video",
    "multi": "multi-left_right",
    "multi-meanwhile": "multi-meanwhile",
}


def write_strips(runs: list[Run], out: Path) -> dict[str, str]:
    written = {}
    for label, name in STRIPS.items():
        run = next(
            (r for r in runs if r.name == name and r.height == STRIP_HEIGHT and r.quality), None
        )
        if run is not None and run.quality is not None:
            path = strips.write_strip(run.quality, out / f"strip-{label}.png")
            written[label] = path.name
    return written


@dataclass
class Articulation:
    engine: list[articulation.LanguageFigures]
    loudness_only: list[articulation.LanguageFigures]
    # The same sentences on the portrait with her lips closed at rest: informative only.
    closed_rest: list[articulation.LanguageFigures]
    strips: dict[str, str]

    def record(self) -> dict[str, Any]:
        return {
            "targets": {
                "closure_share_min": articulation.CLOSURE_MIN,
                "opening_share_min": articulation.OPENING_MIN,
                "round_ratio_max": articulation.ROUND_MAX_RATIO,
            },
            "sentences": articulation.SENTENCES,
            "engine": [f.summary() for f in self.engine],
            "loudness_only": [f.summary() for f in self.loudness_only],
            "closed_rest": [f.summary() for f in self.closed_rest],
            "verdicts": [
                {"rule": rule, "figure": figure, "passed": passed}
                for f in self.engine
                for rule, figure, passed in f.verdicts()
            ],
            "strips": self.strips,
        }

    def failed(self) -> list[str]:
        return [
            f"articulation: {rule} ({figure})"
            for f in self.engine
            for rule, figure, passed in f.verdicts()
            if not passed
        ]


def measure_articulation(engine: LipsyncEngine, out: Path, height: int) -> Articulation | None:
    if not speech.available():
        print("articulation skipped: libespeak-ng is not installed", flush=True)
        return None
    started = time.perf_counter()
    figures, rendered = articulation.measure(engine, height=height)
    baseline_engine = LipsyncEngine(animator=BuiltinAnimator(phonemes=False))
    baseline_engine.setup()
    baseline, _ = articulation.measure(baseline_engine, height=height)
    with tempfile.TemporaryDirectory(prefix="closed-rest-") as tmp:
        closed = articulation.closed_mouth_portrait(Path(tmp) / "closed.png")
        closed_rest, _ = articulation.measure(engine, height=height, portrait=closed)
    written = {}
    for voice, sentences in rendered.items():
        name = f"strip-articulation-{voice}.png"
        articulation.write_strip(sentences, out / name)
        written[voice] = name
    print(f"articulation {height}p: {time.perf_counter() - started:.1f} s", flush=True)
    return Articulation(figures, baseline, closed_rest, written)


def articulation_markdown(result: Articulation | None) -> list[str]:
    if result is None:
        return ["", "## Articulation", "", "Skipped: libespeak-ng is not installed."]
    lines = [
        "",
        "## Articulation",
        "",
        "Image mode, the astronaut portrait (her rest mouth is an open smile), 480p, idle"
        " motion off; four sentences per language spoken by espeak-ng, whose phoneme events"
        " are the ground truth (`tests/quality/articulation.py` has the method and the"
        " sentences). *closed*: the lip gap on one of a bilabial's frames at most the"
        f" render's closed level + {articulation.CLOSED_TOLERANCE} x its speaking span;"
        f" *open*: an open vowel's widest frame at least closed + {articulation.OPEN_MIN}"
        " x span; *rounded/spread*: mean mouth width (corners 61/291) over rounded vowels'"
        " frames over that of spread vowels'. Targets: closures >="
        f" {articulation.CLOSURE_MIN:.0%}, openings >= {articulation.OPENING_MIN:.0%},"
        f" rounded/spread <= {articulation.ROUND_MAX_RATIO}. *Loudness only* is the drive"
        " before phonemes (`BuiltinAnimator(phonemes=False)`).",
        "",
        "| voice | drive | closures m/b/p | openings | rounded/spread width |"
        " sync r per sentence | speed x |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, figures in (
        ("phonemes", result.engine),
        ("loudness only", result.loudness_only),
        ("phonemes, lips closed at rest", result.closed_rest),
    ):
        for f in figures:
            lines.append(
                f"| {f.voice} | {label} | {f.closed}/{f.bilabials} ({f.closure_share:.0%}) |"
                f" {f.opened}/{f.opens} ({f.opening_share:.0%}) | {f.round_ratio:.3f} |"
                f" {', '.join(f'{r:.2f}' for r in f.sync_r)} | {f.speed:.1f} |"
            )
    lines += [
        "",
        "Sync r here is of espeak-ng's sentences: a mouth that shuts on every m/b/p and opens"
        " an ee less than an ah follows the loudness less closely by design; the sync rule"
        " applies to the renders above. Most of the drop is her smile: in every pause her"
        " lips are apart (the portrait's own mouth), and each m/b/p seals them, below the"
        " pause level, while the sound is loud. *Lips closed at rest* is the same portrait"
        " with her lips sealed at rest (by the engine's own rig; targets not applied): its"
        " sync r is what a closed-mouth face gets.",
        "",
        "Strips: one tile per classified phoneme (B: m/b/p, its most closed frame; O: open"
        " vowel, its widest; R: rounded; S: spread).",
        "",
    ]
    for voice, name in result.strips.items():
        lines += [f"### {voice}", "", f"![articulation {voice}]({name})", ""]
    return lines


def markdown(runs: list[Run], extra: dict[str, Any] | None, strip_files: dict[str, str]) -> str:
    lines = [
        "# Lip-sync quality",
        "",
        "Measured on the rendered MP4s with a face mesh of its own (BlazeFace + 468-point mesh)"
        " and the decoded sound track; inputs are synthetic (the astronaut portrait, a"
        " panning/zooming talking video made from it, the portrait and its mirror image as two"
        " people; speech-like audio with pauses). Method: `tests/quality/metrics.py`; rules:"
        " `tests/quality/rules.py`.",
        "",
        "- **sync**: Pearson r of the mouth opening (inner-lip gap 13/14 over the outer-eye"
        " distance) with the loudness (RMS dB per frame), best lag in -5..+5 frames (+ = the"
        " mouth leads). Rule: r >= 0.6 at |lag| <= 2.",
        "- **pause**: opening in pauses (p95) above the face at rest, as a fraction of the"
        " speaking span. Rule: <= 0.33.",
        "- **PSNR**: luma, outside the mouth/jaw region, against the input (worst frame; idle"
        " motion off). Rule: >= 40 dB. *x264 alone* is the input sent through the encoder with"
        " no engine at all: the ceiling any engine gets at the configured crf.",
        "- **flicker**: frame-to-frame change of the edit at the mouth/jaw region's edge minus"
        " the ring just outside it, worst of 12 sectors, grey levels. Rule: <= 0.5.",
        "",
        "| render | size | sync r (lag) | pause | PSNR dB (x264 alone) | flicker | speed x |"
        " failed rules |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(_row(run))
    if extra:
        lines += [
            "",
            "Sync r of multi (meanwhile, 480p, 6 s) over more voice pairs"
            f" {extra['multi_meanwhile_480p_voice_seeds']}: left"
            f" {extra['sync_best_r']['left']}, right {extra['sync_best_r']['right']}"
            f" ({extra['below_rule']} below the rule).",
        ]
    failed = [
        f"- {run.name} {run.height}p: {v.rule} — {v.figure}"
        for run in runs
        if run.quality is not None
        for v in rules.verdicts(run.quality, check_psnr=run.check_psnr)
        if not v.passed
    ]
    lines += ["", "## Failed rules", "", *(failed or ["None."])]
    lines += ["", "## Frame strips", ""]
    for label, name in strip_files.items():
        lines += [f"### {label} ({STRIP_HEIGHT}p)", "", f"![{label}]({name})", ""]
    return "\n".join(lines) + "\n"


def _row(run: Run) -> str:
    quality = run.quality
    if quality is None:
        return f"| {run.name} | {run.height}p | - | - | - | - | - | {run.error} |"
    sync = ", ".join(
        f"{p.name[0] if len(quality.people) > 1 else ''}{p.sync.best_r:.2f} ({p.sync.best_lag:+d})"
        for p in quality.people
    )
    pause = ", ".join(f"{p.closed.fraction:.2f}" for p in quality.people)
    psnr = "-"
    if run.check_psnr and quality.psnr_outside_min_db is not None:
        psnr = f"{quality.psnr_outside_min_db:.2f} ({quality.psnr_codec_only_db or np.nan:.2f})"
    flicker = f"{quality.flicker.excess:.2f}" if quality.flicker else "-"
    speed = quality.duration_s / max(quality.render_s, 1e-9)
    failed = [v.rule for v in rules.verdicts(quality, check_psnr=run.check_psnr) if not v.passed]
    failed_cell = "; ".join(failed).replace("|", "\\|") or "none"  # a pipe ends a cell
    return (
        f"| {run.name} | {quality.width}x{quality.height} | {sync} | {pause} | {psnr} |"
        f" {flicker} | {speed:.1f} | {failed_cell} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-report", help="output folder")
    parser.add_argument("--heights", default="480,720", help="output heights, comma separated")
    parser.add_argument("--no-robustness", action="store_true", help="skip the extra voices")
    parser.add_argument(
        "--no-articulation", action="store_true", help="skip the espeak-ng articulation report"
    )
    args = parser.parse_args(argv)
    heights = tuple(int(h) for h in args.heights.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = LipsyncEngine()
    engine.setup()
    with tempfile.TemporaryDirectory(prefix="quality-report-") as tmp:
        work = Path(tmp)
        runs = collect(engine, work, heights)
        extra = None if args.no_robustness else robustness(engine, work)
    spoken = None if args.no_articulation else measure_articulation(engine, out, 480)
    strip_files = write_strips(runs, out) if STRIP_HEIGHT in heights else {}
    report = {
        "rules": {
            "sync_min_r": rules.SYNC_MIN_R,
            "sync_max_lag_frames": rules.SYNC_MAX_LAG,
            "psnr_min_db": rules.PSNR_MIN_DB,
            "flicker_max_excess": rules.FLICKER_MAX_EXCESS,
            "pause_max_fraction": round(rules.PAUSE_MAX_FRACTION, 3),
        },
        "renders": [run.record() for run in runs],
        "robustness": extra,
        "strips": strip_files,
        "articulation": spoken.record() if spoken is not None else None,
    }
    (out / "quality.json").write_text(json.dumps(report, indent=2))
    report_md = markdown(runs, extra, strip_files)
    if not args.no_articulation:
        report_md += "\n".join(articulation_markdown(spoken)) + "\n"
    (out / "QUALITY.md").write_text(report_md)
    failed_rules = [
        f"{run.name} {run.height}p: {v.rule} ({v.figure})"
        for run in runs
        if run.quality is not None
        for v in rules.verdicts(run.quality, check_psnr=run.check_psnr)
        if not v.passed
    ] + (spoken.failed() if spoken is not None else [])
    print(f"wrote {out / 'quality.json'}, {out / 'QUALITY.md'} and {len(strip_files)} strips")
    print("failed rules:" if failed_rules else "all rules pass", *failed_rules, sep="\n  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
