"""Hours of a corpus per language, voice and split: what `stepaudio data stats` prints."""

from __future__ import annotations

from collections import defaultdict

from stepaudio.train.data.manifest import Utterance


def corpus_stats(utterances: list[Utterance]) -> dict[str, dict[str, dict[str, float]]]:
    """{"language" | "voice" | "split" | "source": {key: {"utterances": n, "hours": h}}}, plus "total"."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for field in ("language", "voice", "split", "source"):
        groups: dict[str, dict[str, float]] = defaultdict(lambda: {"utterances": 0, "hours": 0.0})
        for utt in utterances:
            groups[getattr(utt, field)]["utterances"] += 1
            groups[getattr(utt, field)]["hours"] += utt.duration / 3600
        table[field] = dict(sorted(groups.items()))
    table["total"] = {"all": {"utterances": len(utterances), "hours": sum(u.duration for u in utterances) / 3600}}
    return table


def format_stats(table: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = []
    for field, groups in table.items():
        lines.append(f"{field}:")
        for key, row in groups.items():
            hours = row["hours"]
            lines.append(f"  {key:<36} {int(row['utterances']):>7} utt  {hours:8.3f} h  {hours * 60:8.1f} min")
    return "\n".join(lines)
