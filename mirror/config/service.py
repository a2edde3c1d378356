"""The daemon's part of the config: schedules, drop folders, metrics address, watch tuning."""

from __future__ import annotations

from pathlib import Path

from mirror.config.model import Schedule, ServiceSettings
from mirror.config.yaml_view import YamlView

SCHEDULE_KEYS = ("cron", "interval_minutes", "jitter_s", "at_start")
WATCH_KEYS = ("settle_s", "debounce_s")


def read_service(top: dict[str, YamlView]) -> ServiceSettings:
    settings = ServiceSettings()
    host, port = settings.metrics_host, settings.metrics_port
    if "metrics" in top:
        metrics = top["metrics"].mapping(("listen",))
        if "listen" in metrics:
            host, port = _listen_address(metrics["listen"])
    settle, debounce = settings.settle_s, settings.debounce_s
    if "watch" in top:
        watch = top["watch"].mapping(WATCH_KEYS)
        settle = watch["settle_s"].number(0.0, 3600.0) if "settle_s" in watch else settle
        debounce = watch["debounce_s"].number(0.0, 3600.0) if "debounce_s" in watch else debounce
    recompress = (
        top["recompress_after_s"].number(0.0)
        if "recompress_after_s" in top
        else settings.recompress_after_s
    )
    return ServiceSettings(host, port, settle, debounce, recompress)


def _listen_address(view: YamlView) -> tuple[str, int]:
    text = view.string()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise view.error(f"expected HOST:PORT such as 127.0.0.1:9184, got {text!r}")
    return host.strip("[]"), int(port_text)


def read_schedule(view: YamlView) -> Schedule:
    fields = view.mapping(SCHEDULE_KEYS)
    if ("cron" in fields) == ("interval_minutes" in fields):
        raise view.error("give exactly one of cron: '0 */6 * * *' or interval_minutes: 360")
    cron = None
    if "cron" in fields:
        cron = fields["cron"].string()
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(cron)
        except ValueError as exc:
            raise fields["cron"].error(f"invalid cron expression: {exc}") from None
    return Schedule(
        cron=cron,
        interval_minutes=(
            fields["interval_minutes"].number(0.01) if "interval_minutes" in fields else None
        ),
        jitter_s=fields["jitter_s"].number(0.0) if "jitter_s" in fields else 0.0,
        at_start=fields["at_start"].boolean() if "at_start" in fields else False,
    )


def read_drop_folders(view: YamlView, base: Path) -> tuple[Path, ...]:
    folders: list[Path] = []
    for item in view.sequence():
        path = Path(item.string()).expanduser()
        path = (path if path.is_absolute() else base / path).resolve()
        if not path.is_dir():
            raise item.error(f"drop folder {path} does not exist or is not a directory")
        if path in folders:
            raise item.error(f"drop folder {path} is listed twice")
        folders.append(path)
    return tuple(folders)
