"""``python -m semsim_study.annotation {serve,tokens,status,export,validate,audit-sheet,audit-score}``:
the annotation app, its files, and a blind audit of the crowd by eye.

- ``serve``: the web app for the datasets' tasks (data/tasks/<dataset>/tasks.csv), on
  127.0.0.1 unless told otherwise, served by waitress (threads; answers are written to SQLite
  as they are given);
- ``tokens``: create annotators and print their tokens (only a hash is stored), rotate a
  token, list annotators; ``--admin`` makes (or replaces) the token of the status page;
- ``status``: the campaign's coverage, annotators (gold accuracy, time per answer) and
  agreement so far, as a table or ``--json`` (the admin page shows the same, status.py);
- ``export``: the long-format answers CSV (item_id,annotator_id,protocol,answer,submitted_at),
  written atomically; safe while the app runs;
- ``validate``: check answer files in any supported format exactly as the annotate stage
  would, writing nothing: exit 0 and one line for good files, exit 2 and every problem (file,
  line, reason) for bad ones;
- ``audit-sheet``: numbered, shuffled contact sheets (PNG and one HTML page) of reconstructions
  sampled by PSNR band and crowd verdict, verdicts hidden, an answers template and a hidden key
  (annotation/audit.py);
- ``audit-score``: the filled answers against the crowd: agreement overall, per dataset, per
  band, weighted back to the population; writes score.json in the audit folder.

Defaults come from params.yaml (``datasets``, ``seed``, ``annotate.app.*``) when it exists.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .. import params as P
from ..errors import ConfigError, StudyError
from .status import campaign, exposure_line, record_campaign
from .store import Store

log = logging.getLogger("annotation")
DEFAULT_DB = "data/annotation_app/answers.sqlite"


def _params(path: str) -> dict:
    return P.load(path) if Path(path).is_file() else {}


def make_server(args: argparse.Namespace, params: dict):
    """Build the app and its waitress server (not yet running); tests call it with port 0."""
    import waitress

    from .app import DEFAULT_HOSTS, create_app
    from .catalog import Catalog
    from .tasks import check_section

    check_section(params)
    datasets = args.datasets or P.get(params, "datasets", list, None)
    if not datasets:
        raise ConfigError("no datasets: pass --datasets or run where params.yaml lists them")
    k = args.annotators_per_item or P.positive_int(params, "annotate.app.annotators_per_item", 3)
    if k < 1:
        raise ConfigError(f"--annotators-per-item must be at least 1, got {k}")
    seed = args.seed if args.seed is not None else P.get(params, "seed", int, 0)
    views = args.max_views_per_original  # None: no cap (params null, --max-views-per-original 0)
    if views is None and P.get(params, "annotate.app.max_views_per_original", None, 1) is not None:
        views = P.positive_int(params, "annotate.app.max_views_per_original", 1)
    if views is not None and views < 0:
        raise ConfigError(f"--max-views-per-original must be at least 1 (0: no cap), got {views}")
    gold_rate = args.gold_rate if args.gold_rate is not None else P.number(
        params, "annotate.app.gold_rate", at_least=0.0, below=1.0, default=0.1)
    if not 0 <= gold_rate < 1:
        raise ConfigError(f"--gold-rate must lie in [0, 1), got {gold_rate}")
    store = Store(args.db)
    catalog = Catalog.load(args.root, datasets, store.ref)
    host = args.host or P.get(params, "annotate.app.host", str, "127.0.0.1")
    allowed = tuple(P.get(params, "annotate.app.allowed_hosts", list, list(DEFAULT_HOSTS))) + tuple(args.allowed_host or ())
    if host not in ("0.0.0.0", "::", "") and host.lower() not in allowed:
        allowed += (host,)  # the address it binds to is always its own
    app = create_app(catalog, store, annotators_per_item=k, seed=seed, lease_seconds=args.lease, allowed_hosts=allowed,
                     max_views_per_original=views or None, gold_rate=gold_rate)
    pool = app.config["POOL"]
    record_campaign(store, {"datasets": list(datasets), "annotators_per_item": k, "max_views_per_original": views or None,
                            "gold_rate": gold_rate, "people_needed": pool.people_needed(k),
                            "reconstructions_per_original": pool.per_original})
    port = args.port if args.port is not None else P.get(params, "annotate.app.port", int, 8765)
    server = waitress.create_server(app, host=host, port=port, threads=args.threads, ident="semsim-annotation")
    return server, catalog, k


def cmd_serve(args: argparse.Namespace) -> None:
    params = _params(args.params)
    server, catalog, k = make_server(args, params)
    host, port = server.effective_host, server.effective_port
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: plain HTTP, reachable from other machines; put it behind HTTPS", host)
    log.info("%d items (%s), %d annotators per item, answers in %s", len(catalog.entries),
             ", ".join(sorted({e.task.dataset for e in catalog.entries})), k, args.db)
    log.info("%s", exposure_line(campaign(Store(args.db))))
    url = args.public_url or f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    if args.public_url or host not in ("0.0.0.0", "::", ""):  # a wildcard address is no link anyone can open
        Store(args.db).set_setting("served_url", url.rstrip("/"))  # `tokens` prints links to where it is served
    else:
        log.warning("bound to all addresses: pass --public-url (the address people open) so `tokens` prints "
                    "links to it")
    log.info("annotators open %s/ and enter their token, or open the link `tokens` prints (Ctrl-C stops)", url)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def cmd_tokens(args: argparse.Namespace) -> None:
    params = _params(args.params)
    store = Store(args.db)
    url = args.url or store.setting("served_url")  # where `serve` last served this database
    if not url:
        host = P.get(params, "annotate.app.host", str, "127.0.0.1")
        url = f"http://{host}:{P.get(params, 'annotate.app.port', int, 8765)}"
    url = url.rstrip("/")
    made = {}
    if args.admin:
        token = store.rotate_admin_token()
        print(f"admin\t{token}\t{url}/admin#token={token}")
    if args.add:
        made.update(store.add_annotators(args.add))
    if args.rotate:
        made.update(store.rotate_tokens(args.rotate))
    for name, token in made.items():
        print(f"{name}\t{token}\t{url}/#token={token}")
    if args.list or not (made or args.admin):
        for name, created, answers in store.annotators():
            print(f"{name}\tcreated {created}\t{answers} answers")


def cmd_status(args: argparse.Namespace) -> None:
    import json

    from .status import render_text, status
    from .tasks import read_tasks

    params = _params(args.params)
    store = Store(args.db, create=False)
    served = campaign(store)
    datasets = args.datasets or served.get("datasets") or P.get(params, "datasets", list, None)
    if not datasets:
        raise ConfigError("no datasets: pass --datasets, serve this database first, or run where params.yaml lists them")
    k = args.annotators_per_item or served.get("annotators_per_item") or P.positive_int(
        params, "annotate.app.annotators_per_item", 3)
    tasks = {}
    for ds in datasets:
        tasks.update(read_tasks(Path(args.root) / "data" / "tasks" / ds / "tasks.csv"))
    state = status(store, tasks, k)
    print(json.dumps(state, indent=2) if args.json else render_text(state))


def cmd_export(args: argparse.Namespace) -> None:
    store = Store(args.db, create=False)
    n = store.export_csv(args.out)
    log.info("%d answers written to %s", n, args.out)


FORMATS_BY_SUFFIX = {".csv": "csv", ".sqlite": "app", ".db": "app", ".json": "label_studio"}


def cmd_validate(args: argparse.Namespace) -> None:
    """Check answer files as the annotate stage would, touching nothing; one line when they are good."""
    from . import importers
    from .longformat import dataset_of
    from .tasks import read_tasks

    params = _params(args.params)
    everything = P.get(params, "datasets", list, None) or []
    datasets = args.dataset or everything
    if not datasets:
        raise ConfigError("no datasets: pass --dataset or run where params.yaml lists them")
    paths = [Path(p) for p in args.files]
    fmt = args.format
    if fmt is None:
        guesses = {"paper_folders" if p.is_dir() else FORMATS_BY_SUFFIX.get(p.suffix.lower()) for p in paths}
        if len(guesses) != 1 or None in guesses:
            raise ConfigError(f"cannot tell the format of {', '.join(map(str, paths))} from the names; "
                              f"pass --format ({', '.join(importers.SOURCES)})")
        fmt = guesses.pop()
    tasks = {}
    for ds in datasets:
        tasks.update(read_tasks(Path(args.root) / "data" / "tasks" / ds / "tasks.csv"))
    options = dict(P.get(params, f"annotate.options.{fmt}", dict, {}) or {})
    if args.task_map is not None:
        if fmt != "label_studio":
            raise ConfigError("--task-map is for Label Studio exports of blinded tasks (--format label_studio)")
        options["task_map"] = args.task_map
    table = importers.import_answers(fmt, paths, tasks, skip_datasets=set(everything) - set(datasets), **options)
    stamps = table["submitted_at"][table["submitted_at"] != ""]
    print(f"{', '.join(map(str, paths))}: valid ({fmt}): {len(table)} answers by {table['annotator_id'].nunique()} "
          f"annotators on {table['item_id'].nunique()} items of {', '.join(sorted({dataset_of(i) for i in table['item_id']}))}"
          + f", {len(stamps)} with a submission time")


def cmd_export_label_studio(args: argparse.Namespace) -> None:
    from . import label_studio
    from .tasks import read_tasks

    params = _params(args.params)
    datasets = args.datasets or P.get(params, "datasets", list, None)
    if not datasets:
        raise ConfigError("no datasets: pass --datasets or run where params.yaml lists them")
    tasks = {}
    for ds in datasets:
        tasks.update(read_tasks(Path(args.root) / "data" / "tasks" / ds / "tasks.csv"))
    seed = args.seed if args.seed is not None else P.get(params, "seed", int, 0)
    counts = label_studio.export(tasks.values(), args.out, args.root, args.image_url, seed=seed)
    for protocol, n in counts.items():
        log.info("protocol %s: %d blinded tasks in a random order -> %s/%s/tasks.json, labelling config "
                 "%s/%s/label_config.xml; keep %s/%s/%s (task key -> item id) for the import, do not upload it",
                 protocol, n, args.out, protocol, args.out, protocol, args.out, protocol, label_studio.MAP_NAME)


def cmd_audit_sheet(args: argparse.Namespace) -> None:
    from . import audit

    datasets = args.datasets or P.get(_params(args.params), "datasets", list, None)
    if not datasets:
        raise ConfigError("no datasets: pass --datasets or run where params.yaml lists them")
    key = audit.make_audit(args.root, datasets, args.per_dataset, args.out, seed=args.seed, edges=args.bands,
                           per_sheet=args.per_sheet, force=args.force, originals=args.originals)
    log.info("%d cells of %s in %s: open %s/%s, fill %s/%s, then run audit-score %s (do not open %s before)",
             len(key["items"]), ", ".join(datasets), args.out, args.out, audit.PAGE_FILE, args.out,
             audit.ANSWERS_FILE, args.out, audit.KEY_FILE)


def cmd_audit_score(args: argparse.Namespace) -> None:
    from . import audit

    score = audit.score_audit(args.dir, args.answers)
    print(audit.summary(score))
    print(f"written: {Path(args.dir) / audit.SCORE_FILE}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m semsim_study.annotation", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web app for annotators")
    serve.add_argument("--datasets", nargs="+", help="datasets to annotate (default: params datasets)")
    serve.add_argument("--annotators-per-item", type=int, help="K answers per reconstruction (default: params annotate.app.annotators_per_item, else 3)")
    serve.add_argument("--db", default=DEFAULT_DB, help=f"SQLite database (default {DEFAULT_DB})")
    serve.add_argument("--host", help="address to bind (default: params annotate.app.host, else 127.0.0.1)")
    serve.add_argument("--allowed-host", action="append", metavar="NAME",
                       help="a host name browsers may use to reach the app, e.g. the proxy's "
                            "(repeatable; default: params annotate.app.allowed_hosts, else localhost, 127.0.0.1, ::1)")
    serve.add_argument("--port", type=int, help="port (default: params annotate.app.port, else 8765; 0 = any free port)")
    serve.add_argument("--root", default=".", help="project root holding data/tasks and data/attacks")
    serve.add_argument("--params", default="params.yaml")
    serve.add_argument("--seed", type=int, help="seed of the per-annotator tie-break order (default: params seed)")
    serve.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    serve.add_argument("--public-url", help="the address people open when a proxy serves the app "
                                            "(e.g. https://annotate.example.org); token links use it")
    serve.add_argument("--max-views-per-original", type=int, metavar="V",
                       help="reconstructions of one original a person may judge (default: params "
                            "annotate.app.max_views_per_original, else 1; 0 = no cap)")
    serve.add_argument("--gold-rate", type=float, help="share of gold items mixed in (default: params "
                                                       "annotate.app.gold_rate, else 0.1; 0 = none)")
    serve.add_argument("--lease", type=float, default=900.0,
                       help="seconds an item shown to someone counts towards its coverage (default 900)")
    serve.set_defaults(func=cmd_serve)

    tokens = sub.add_parser("tokens", help="create annotators and print their tokens")
    tokens.add_argument("--db", default=DEFAULT_DB)
    tokens.add_argument("--add", nargs="+", default=[], metavar="NAME", help="new annotators")
    tokens.add_argument("--rotate", nargs="+", default=[], metavar="NAME", help="new tokens for existing annotators")
    tokens.add_argument("--list", action="store_true", help="list annotators and their answer counts")
    tokens.add_argument("--admin", action="store_true", help="make (or replace) the admin token of the status page "
                                                              "/admin; no annotator token opens it")
    tokens.add_argument("--url", help="address in the printed links (default: where `serve` last served this "
                                      "database, else annotate.app.host and port)")
    tokens.add_argument("--params", default="params.yaml")
    tokens.set_defaults(func=cmd_tokens)

    state = sub.add_parser("status", help="coverage, annotators, gold accuracy and agreement so far")
    state.add_argument("--db", default=DEFAULT_DB)
    state.add_argument("--json", action="store_true", help="print the status as JSON")
    state.add_argument("--datasets", nargs="+", help="datasets (default: those serve last served, else params datasets)")
    state.add_argument("--annotators-per-item", type=int, help="K (default: what serve last used, else params)")
    state.add_argument("--root", default=".", help="project root holding data/tasks")
    state.add_argument("--params", default="params.yaml")
    state.set_defaults(func=cmd_status)

    check = sub.add_parser("validate", help="check answer files as the annotate stage would (writes nothing)")
    check.add_argument("files", nargs="+", help="answer files (or the paper's folders)")
    check.add_argument("--format", choices=("csv", "app", "paper_folders", "label_studio"),
                       help="default: from the name (.csv, .sqlite/.db, .json, a folder)")
    check.add_argument("--dataset", action="append", help="the dataset(s) the answers are for (default: params datasets)")
    check.add_argument("--root", default=".", help="project root holding data/tasks")
    check.add_argument("--task-map", help="Label Studio: the export's task_map.csv (default: the one beside each file)")
    check.add_argument("--params", default="params.yaml")
    check.set_defaults(func=cmd_validate)

    export = sub.add_parser("export", help="write the long-format answers CSV")
    export.add_argument("--db", default=DEFAULT_DB)
    export.add_argument("--out", required=True, help="CSV to write (atomically)")
    export.set_defaults(func=cmd_export)

    ls = sub.add_parser("export-label-studio", help="write Label Studio labelling configs and tasks for the datasets")
    ls.add_argument("--datasets", nargs="+", help="datasets to export (default: params datasets)")
    ls.add_argument("--out", required=True, help="folder for <A|B>/label_config.xml and <A|B>/tasks.json")
    ls.add_argument("--root", default=".", help="project root holding data/tasks and data/attacks")
    ls.add_argument("--image-url", help="URL at which --out is served: images are copied there under opaque names "
                                        "(<A|B>/images/...) and referenced by it; default: embedded as data URIs")
    ls.add_argument("--seed", type=int, help="seed of the task order (default: params seed)")
    ls.add_argument("--params", default="params.yaml")
    ls.set_defaults(func=cmd_export_label_studio)

    from .audit import BANDS_DB, PER_SHEET

    sheet = sub.add_parser("audit-sheet", help="blind contact sheets to audit the crowd's verdicts by eye")
    sheet.add_argument("--datasets", nargs="+", help="datasets to sample (default: params datasets)")
    sheet.add_argument("--per-dataset", type=int, required=True, metavar="N", help="cells per dataset")
    sheet.add_argument("--out", required=True, metavar="DIR", help="audit folder to write (replaced whole; "
                                                                   "one with filled answers only with --force)")
    sheet.add_argument("--root", default=".", help="project root holding data/tasks, data/metrics, data/annotations")
    sheet.add_argument("--seed", type=int, default=0, help="seed of the sample and the cell order (default 0)")
    sheet.add_argument("--bands", type=float, nargs="+", default=list(BANDS_DB), metavar="DB",
                       help=f"PSNR band edges in dB (default {' '.join(format(b, 'g') for b in BANDS_DB)})")
    sheet.add_argument("--per-sheet", type=int, default=PER_SHEET, help=f"cells per PNG sheet (default {PER_SHEET})")
    sheet.add_argument("--force", action="store_true", help="replace an audit folder whose answers are filled in")
    sheet.add_argument("--no-originals", dest="originals", action="store_false",
                       help="leave out the control cells (each protocol A original, shown as a reconstruction)")
    sheet.add_argument("--params", default="params.yaml")
    sheet.set_defaults(func=cmd_audit_sheet)

    score = sub.add_parser("audit-score", help="compare an audit's filled answers with the crowd")
    score.add_argument("dir", help="the audit folder audit-sheet wrote")
    score.add_argument("--answers", help="filled answers CSV (default: DIR/answers.csv)")
    score.set_defaults(func=cmd_audit_score)
    return top


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
