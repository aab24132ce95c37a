"""The quality rules of the engine issue, as numbers, and a verdict per rule for the report.

The tests assert these; ``tests.quality_report`` prints the same verdicts, so
the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.quality.scenarios import ModeQuality

# Sync: Pearson r of mouth opening and loudness at the best lag in -5..+5 frames.
SYNC_MIN_R = 0.6
SYNC_MAX_LAG = 2
# Stability (still-image modes, idle motion off): luma PSNR outside the mouth/jaw region.
PSNR_MIN_DB = 40.0
# No flicker at the region's edge: the RMS frame-to-frame change of the (blurred) edit in
# a band on the mouth/jaw region's boundary may exceed that of the untouched ring just
# outside it by at most half a grey level. 8-bit video cannot show a steadier edge than
# +-1 level; a patch toggling by 3 levels across the edge measures ~1.0 (see the metric
# tests), the engine's smooth warps 0.0-0.15.
FLICKER_MAX_EXCESS = 0.5
# Mouth near closed in pauses (and for the silent person in multi): the pause opening
# (95th percentile) may exceed the face's resting opening by at most a third of its
# speaking span (90th percentile of speech frames minus the most closed it gets).
# Why a third: a mouth left open in pauses, or still following a source video's own
# speech, sits at 0.5-1 of the span; and the same closed mouth reads up to ~0.15 of the
# span apart between pauses of one render at 480p (x264 codes each pause's frames
# differently and the face mesh follows), so a much tighter bound would test the codec.
PAUSE_MAX_FRACTION = 1 / 3


@dataclass(frozen=True)
class Verdict:
    rule: str
    figure: str
    passed: bool


def verdicts(quality: ModeQuality, *, check_psnr: bool) -> list[Verdict]:
    """One verdict per rule that applies to this render (PSNR only with idle motion off)."""
    out: list[Verdict] = []
    for person in quality.people:
        who = "" if len(quality.people) == 1 else f" ({person.name})"
        sync = person.sync
        out.append(
            Verdict(
                f"sync r >= {SYNC_MIN_R} at |lag| <= {SYNC_MAX_LAG}{who}",
                f"r={sync.best_r:.2f} lag={sync.best_lag:+d}",
                sync.best_r >= SYNC_MIN_R and abs(sync.best_lag) <= SYNC_MAX_LAG,
            )
        )
        out.append(
            Verdict(
                f"closed in pauses <= {PAUSE_MAX_FRACTION:.2f} of speaking{who}",
                f"{person.closed.fraction:.2f} ({person.closed.pause_frames} frames)",
                person.closed.fraction <= PAUSE_MAX_FRACTION,
            )
        )
    if check_psnr and quality.psnr_outside_min_db is not None:
        out.append(
            Verdict(
                f"PSNR outside mouth/jaw >= {PSNR_MIN_DB:g} dB",
                f"{quality.psnr_outside_min_db:.2f} dB (x264 alone: "
                f"{quality.psnr_codec_only_db or float('nan'):.2f} dB)",
                quality.psnr_outside_min_db >= PSNR_MIN_DB,
            )
        )
    if quality.flicker is not None:
        out.append(
            Verdict(
                f"edge flicker excess <= {FLICKER_MAX_EXCESS} grey",
                f"{quality.flicker.excess:.2f} (edge {quality.flicker.edge:.2f},"
                f" outside {quality.flicker.outside:.2f})",
                quality.flicker.excess <= FLICKER_MAX_EXCESS,
            )
        )
    return out
