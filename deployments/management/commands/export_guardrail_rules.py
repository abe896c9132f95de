"""Write the soft guardrails as a Prometheus rule file for the tiers in the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from deployments.alerts import rules_yaml
from deployments.models import Tier
from deployments.services import DEFAULT_TIERS


class Command(BaseCommand):
    help = (
        "Render deployments/alerts.py's guardrails as a Prometheus rule file (one rule per "
        "guardrail and tier). Check it with `promtool check rules FILE`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")
        parser.add_argument(
            "--default-tiers",
            action="store_true",
            help="use the built-in default tiers instead of the database's "
            "(how deploy/prometheus/inference-rules.yml is made)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["default_tiers"]:
            tiers = [Tier(**spec) for spec in DEFAULT_TIERS]
        else:
            tiers = list(Tier.objects.all())
        text = rules_yaml(tiers)
        if options["output"]:
            Path(options["output"]).write_text(text)
            self.stderr.write(f"wrote {len(tiers)} tiers' guardrails to {options['output']}")
        else:
            self.stdout.write(text, ending="")
