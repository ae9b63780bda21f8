"""``manage.py evaluate``: one configuration over the gold set, scored, with what it cost; or
(``--compare``) the configurations evaluated so far, side by side (halacha/evaluation.py)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser

from drains import validate
from drains.jobs import JOB_CHECKS
from drains.operator_commands import add_actor_argument, command_actor
from drains.runner import DrainRunFailed
from halacha import evaluation
from halacha.extractors import BACKENDS
from halacha.extractors.base import ExtractionConfigError
from halacha.gold import GoldSetError

EFFORTS = ("low", "medium", "high", "xhigh", "max")


class Command(validate.CheckedCommand):
    help = (
        "Run the halacha extraction over the gold set (halacha/gold/ and the decisions added in "
        "the admin) with one backend, model and effort, and score it: precision, recall and F1 "
        "by quote-span overlap, the quotes' grounding tiers, the tokens, the dollars and the "
        "share of the 5-hour and weekly windows it used. Its calls go through the drains' "
        "runner (the quota's ceiling and reserve, rate limits, the journal) and spend quota: "
        "about one halacha call per gold decision. Nothing else changes: no decision, no "
        "halacha, no drain's backlog. --compare shows every configuration's latest evaluation; "
        "--use ID runs the drains with that evaluation's model and effort (audited)."
    )
    requires_system_checks = JOB_CHECKS

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--backend", type=validate.text(200, what="backend"),
            help=f"{', '.join(BACKENDS)} or module.path:Class. Default: HALACHA_EXTRACTOR.")
        parser.add_argument(
            "--model", type=validate.text(100, what="model"),
            help="The model (e.g. claude-haiku-4-5, or the CLI's alias haiku). Default: the "
            "backend's setting (HALACHA_MODEL, HALACHA_CLI_MODEL).")
        parser.add_argument(
            "--effort", type=validate.choice(lambda: list(EFFORTS), "effort"),
            help=f"{', '.join(EFFORTS)} (anthropic and claude-cli). Default: the model's own.")
        parser.add_argument(
            "--limit", type=validate.whole_number(1, 10_000),
            help="Only the first N gold decisions, Hebrew and English in turn. Default: all.")
        parser.add_argument(
            "--compare", action="store_true",
            help="Show the configurations evaluated so far side by side (no call is made).")
        parser.add_argument(
            "--use", type=validate.whole_number(1, 2**62), metavar="ID",
            help="Run the halacha and metadata drains with evaluation ID's model and effort "
            "(its backend must be HALACHA_EXTRACTOR's). No call is made.")
        parser.add_argument(
            "--use-settings", action="store_true",
            help="Run the drains with the settings' model and effort again.")
        add_actor_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        reading = [flag for flag, on in (("--compare", options["compare"]),
                                         ("--use", options["use"] is not None),
                                         ("--use-settings", options["use_settings"])) if on]
        if reading:
            given = [f"--{name}" for name in ("backend", "model", "effort", "limit")
                     if options[name] is not None]
            if given or len(reading) > 1:
                raise validate.BadInput(f"{reading[0]} runs no evaluation: leave out "
                                        f"{', '.join(given + reading[1:])}")
            if options["compare"]:
                self._table()
                return
            try:
                self.stdout.write(evaluation.choose(
                    options["use"], actor=command_actor(options["actor"])))
            except (evaluation.EvaluationError, ImproperlyConfigured,
                    ExtractionConfigError) as exc:
                raise validate.BadInput(str(exc)) from None
            return
        config = evaluation.Configuration(
            options["backend"] or evaluation.in_use().backend, options["model"] or "",
            options["effort"] or "")
        try:
            with evaluation.one_at_a_time():
                started = evaluation.start(config, limit=options["limit"],
                                           actor=command_actor(options["actor"]))
                self.stdout.write(f"evaluation {started.pk}: {started.label} over "
                                  f"{started.decisions} gold decisions")
                try:
                    done, result = evaluation.run(started, max_items=started.decisions,
                                                  max_minutes=validate_minutes(),
                                                  progress_stream=sys.stderr)
                except DrainRunFailed as exc:
                    raise CommandError(f"evaluation {started.pk}: {exc}") from exc
        except (ImproperlyConfigured, ExtractionConfigError, GoldSetError,
                evaluation.EvaluationError) as exc:
            raise validate.BadInput(str(exc)) from None
        self.stdout.write(result.message)
        self._summary(done)
        self._table()

    def _summary(self, done: Any) -> None:
        (row,) = [r for r in evaluation.compare() if r.evaluation.pk == done.pk] or [
            evaluation._row(done, "")]
        data = evaluation.as_json(row)
        self.stdout.write(
            f"found {data['found']} of {data['gold']} gold halachot; {data['answered']} of "
            f"{data['asked']} decisions asked answered usably ({data['decisions']} to ask): "
            f"precision {data['precision']:.2f}, recall "
            f"{data['recall']:.2f}, F1 {data['f1']:.2f}; quotes by tier: "
            + (", ".join(f"{k} {v}" for k, v in sorted(data["tiers"].items())) or "none")
            + f"; rejected {data['rejected']}")
        self.stdout.write(
            f"cost: {data['input_tokens']:,} input and {data['output_tokens']:,} output tokens"
            + (f", ${data['cost_usd']:.4f}" if data["cost_usd"] is not None else "")
            + (f"; the week {data['week_moved'] * 100:.2f} %" if data["week_moved"] is not None
               else "; no weekly reading came back")
            + (f", the 5-hour window {data['five_hour_moved'] * 100:.2f} %"
               if data["five_hour_moved"] is not None else ""))
        if data["note"]:
            self.stdout.write(f"note: {data['note']}")

    def _table(self) -> None:
        rows = evaluation.compare()
        if not rows:
            self.stdout.write("No evaluation yet: run manage.py evaluate [--model M] [--effort E].")
            return
        self.stdout.write(
            f"{'':3}{'configuration':34}{'F1':>6}{'P':>6}{'R':>6}{'found':>9}"
            f"{'week %/dec':>12}{'dec/1% week':>13}{'$/dec':>9}  evaluated")
        for row in rows:
            d = evaluation.as_json(row)
            mark = ("*" if row.best else " ") + ("u" if row.in_use else " ") + " "
            per_dec = f"{d['week_pct_each']:.3f}" if d["week_pct_each"] is not None else "—"
            per_pct = f"{d['decisions_per_pct_week']:.1f}" if d["decisions_per_pct_week"] else "—"
            dollars = f"{float(row.cost_each):.4f}" if row.cost_each is not None else "—"
            self.stdout.write(
                f"{mark}{(d['configuration'] + ('' if d['complete'] else ' (partial)'))[:33]:34}{d['f1']:6.2f}{d['precision']:6.2f}"
                f"{d['recall']:6.2f}{d['found']:>5}/{d['gold']:<3}{per_dec:>12}{per_pct:>13}"
                f"{dollars:>9}  {evaluation.when(row.evaluation.finished_at)}")
        self.stdout.write("* the most gold halachot per 1 % of the week (per dollar when no "
                          "call reported the week), among complete evaluations; u the "
                          "configuration the drains use now; (partial) stopped short")


def validate_minutes() -> float:
    """An evaluation runs until its cases are done (no normal-mode time cap)."""
    return 24 * 60.0
