"""``neuromod-rl push`` and :func:`load`: share a run's policy on the Hugging Face Hub without pickles.

:func:`push` writes a folder and uploads it: ``model.safetensors`` (the export of
:func:`~neuromod_rl.experiment.export.export_safetensors`), ``policy.onnx`` (when the ``export`` extra
is installed and the policy is one ONNX export takes), the run's ``config.yaml``, its evaluation
summaries (``eval_results.json``) and a model card (``README.md``, :mod:`~neuromod_rl.experiment.hub_card`).
The upload is one call of a *transport*, ``transport(folder, repo_id) -> url``, by default
``huggingface_hub.HfApi.upload_folder``; a caller (a test) may pass another.

:func:`load` rebuilds the model from ``model.safetensors`` and ``config.yaml`` alone, through
:func:`~neuromod_rl.experiment.export.load_exported_model`: from a local folder, or from a repository
downloaded with ``huggingface_hub.snapshot_download`` (only those two files are fetched). A folder that
holds a pickle, lacks a file, or whose ``config.yaml`` is not the config inside the weights is refused
with a :class:`UserError` naming the problem and the fix; nothing in it is imported or called.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from neuromod_rl.experiment import safe_yaml
from neuromod_rl.experiment.algos import algo_class
from neuromod_rl.experiment.config import dump_config, validate
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import eval_summary, load_run
from neuromod_rl.experiment.export import (
    export_onnx,
    export_safetensors,
    exported_config,
    load_exported_model,
    load_safetensors,
    make_exported_env,
)
from neuromod_rl.experiment.hub_card import FILES, model_card
from neuromod_rl.experiment.runs import atomic_write_text, path_kind, write_json
from neuromod_rl.extras import install_hint, require

WEIGHTS, ONNX, CONFIG, RESULTS, CARD = ("model.safetensors", "policy.onnx", "config.yaml", "eval_results.json",
                                       "README.md")
#: what :func:`load` needs, and all it downloads from a repository
NEEDED = (WEIGHTS, CONFIG)
#: file endings of pickle formats (SB3 ``.zip``, torch ``.pt``/``.pth``/``.bin``/``.ckpt``, joblib)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".zip", ".pt", ".pth", ".bin", ".ckpt", ".joblib")
#: how a pickle (protocol 2 and later) and a zip archive (what torch.save and SB3 write) begin
_PICKLE_STARTS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")
_MAX_FILES = 1000
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")

Transport = Callable[[Path, str], str]
Download = Callable[[str, "str | None"], Path]


@dataclass
class Pushed:
    """What :func:`push` did: the folder it wrote, the files in it, why it holds no ONNX graph (``None``
    when it does) and the repository's URL (``None`` for a dry run)."""

    folder: Path
    files: list[str]
    onnx_note: str | None
    url: str | None


# ------------------------------------------------------------------------------ push
def push(run_dir: str | Path, repo_id: str, folder: str | Path | None = None, *, dry_run: bool = False,
         transport: Transport | None = None) -> Pushed:
    """Write a run's shareable files into ``folder`` and upload them to the Hub repository ``repo_id``.

    Args:
        run_dir: a run directory of ``neuromod-rl train``, evaluated with ``neuromod-rl eval`` (the card
            reports its results).
        repo_id: the Hub repository, ``USER/NAME`` (created if it does not exist).
        folder: where the files are written first (default ``RUN_DIR/hub``); new, empty, or written by an
            earlier push: everything in it is uploaded, so it may hold nothing else.
        dry_run: write the folder and upload nothing (needs no ``huggingface_hub``).
        transport: the upload, ``transport(folder, repo_id) -> url``; default :func:`hf_upload`.
    """
    check_repo_id(repo_id)
    if not dry_run and transport is None:
        require("hub", "neuromod-rl push", ("huggingface_hub",))
    folder_path, files, onnx_note = write_folder(run_dir, repo_id, folder)
    url = None if dry_run else (transport or hf_upload)(folder_path, repo_id)
    return Pushed(folder_path, files, onnx_note, url)


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a Hub repository id ``USER/NAME``; else a :class:`UserError`.

    Args:
        repo_id: the id to check.
    """
    if not (isinstance(repo_id, str) and _REPO_ID.fullmatch(repo_id)) or ".." in repo_id or "--" in repo_id:
        raise UserError(f"--repo-id {safe_yaml.short_repr(repo_id)} is not a Hub repository id: write USER/NAME "
                        "(letters, digits, '-', '_' and '.'), e.g. --repo-id alice/plastic-ppo-bandit")
    return repo_id


def write_folder(run_dir: str | Path, repo_id: str,
                 folder: str | Path | None = None) -> tuple[Path, list[str], str | None]:
    """Write the files of a pushed model into ``folder``; return it, the files and why there is no ONNX
    graph (``None`` when there is one). The run (its normalisation, its results) and the folder are checked
    before anything is written.

    Args:
        run_dir: the run directory.
        repo_id: the repository the card's usage snippet loads.
        folder: the folder (default ``RUN_DIR/hub``).
    """
    run, cfg = load_run(run_dir)
    settings = cfg.normalize_settings()
    if settings is not None and settings.norm_obs:
        raise UserError(f"{run.path} normalises its observations (`normalize` in its config), and an export holds the "
                        "policy's weights, not the normalisation statistics: the shared model would act on raw "
                        "observations. Share a run trained with `normalize: false` (or `normalize: {norm_obs: "
                        "false}`).")
    results = {split: summary for split in ("test", "train") if (summary := eval_summary(run, split)) is not None}
    if not results:
        raise UserError(f"{run.path} has no evaluation results, which the model card reports: run `neuromod-rl eval "
                        f"{run.path}` (test tasks) first, then push again.")
    folder = _prepare_folder(run.path / "hub" if folder is None else Path(folder))
    weights = export_safetensors(run.path, folder / WEIGHTS)
    onnx_note = _write_onnx(run.path, folder / ONNX)
    # the config the weights carry (the run's, with what it left to defaults, such as the heads, spelled out)
    atomic_write_text(folder / CONFIG, dump_config(exported_config(weights)))
    write_json(folder / RESULTS, results)
    num_timesteps = int(load_safetensors(weights)[1].get("num_timesteps", "0"))
    card = model_card(cfg, results, repo_id, algo_name=algo_class(cfg.algo).__name__, num_timesteps=num_timesteps,
                      onnx_note=onnx_note)
    atomic_write_text(folder / CARD, card)
    return folder, sorted(p.name for p in folder.iterdir()), onnx_note


def _prepare_folder(folder: Path) -> Path:
    """``folder``, created if needed; refused when it holds anything an earlier push did not write
    (``upload_folder`` would upload it too)."""
    kind = path_kind(folder)
    if kind is None:
        try:
            folder.mkdir(parents=True)
        except OSError as err:
            raise UserError(f"cannot create --folder {str(folder)!r} ({err.strerror}); pass a folder you can write "
                            "to.") from None
        return folder
    if kind != "a directory":
        raise UserError(f"--folder {str(folder)!r} is {kind}, not a folder; pass a new or empty folder.")
    others = sorted(p.name for p in folder.iterdir() if p.name not in FILES or not p.is_file() or p.is_symlink())
    if others:
        raise UserError(f"--folder {folder} holds {others[:5]}, which push did not write, and everything in the folder "
                        "is uploaded: pass a new or empty folder, or remove them.")
    return folder


def _write_onnx(run_dir: Path, path: Path) -> str | None:
    """Write the ONNX graph, or say why not: the extra is missing, or ONNX export does not take the policy."""
    path.unlink(missing_ok=True)  # an earlier push's graph must not be uploaded beside newer weights
    try:
        require("export", "the ONNX graph", ("onnx", "onnxruntime"))
    except ImportError:
        return f"the `export` extra is not installed where this was pushed ({install_hint('export')})."
    try:
        export_onnx(run_dir, path)
    except UserError as err:
        return str(err)
    return None


def hf_upload(folder: Path, repo_id: str) -> str:
    """Upload ``folder`` to the Hub model repository ``repo_id`` (created if missing) with
    ``huggingface_hub``'s ``HfApi.upload_folder``; return the commit's URL. The token is
    ``huggingface_hub``'s: ``HF_TOKEN`` or ``hf auth login``.

    Args:
        folder: the folder :func:`write_folder` wrote.
        repo_id: ``USER/NAME``.
    """
    require("hub", "uploading to the Hugging Face Hub", ("huggingface_hub",))
    from huggingface_hub import HfApi

    # from .utils, not .errors: every release since 0.20 (the extra's floor) has them there
    from huggingface_hub.utils import HfHubHTTPError, LocalTokenNotFoundError

    api = HfApi(library_name="neuromod-rl")
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model",
                                 commit_message="Upload a neuromod-rl model (safetensors, config, card)")
    except (HfHubHTTPError, LocalTokenNotFoundError, ConnectionError) as err:
        raise UserError(f"uploading {folder} to {repo_id} failed ({safe_yaml.truncate(str(err), 300)}). Log in with "
                        "`hf auth login` (or set HF_TOKEN) with a token that may write to that repository, then "
                        f"push again; the files are ready in {folder}.") from None
    return str(info.commit_url)


# ------------------------------------------------------------------------------ load
def load(source: str | Path, env=None, *, revision: str | None = None, download: Download | None = None,
         observation_space=None, action_space=None):
    """The model a pushed folder or Hub repository holds, rebuilt from ``model.safetensors`` and
    ``config.yaml`` (nothing unpickled, nothing it names imported); ready for ``predict``.

    Args:
        source: a local folder written by ``neuromod-rl push``, or a Hub repository id ``USER/NAME``.
        env: the env (or VecEnv) to attach; default none (the spaces recorded in the weights file).
        revision: for a repository: a branch, tag or commit.
        download: for a repository: ``download(repo_id, revision) -> folder``; default :func:`hf_download`.
        observation_space: the policy's observation space, in place of ``env`` (with ``action_space``).
        action_space: the policy's action space, in place of ``env`` (with ``observation_space``).
    """
    weights = _weights_of(source, revision, download)
    return load_exported_model(weights, env, observation_space=observation_space, action_space=action_space)


def make_env(source: str | Path, *, revision: str | None = None, download: Download | None = None):
    """The env the ``config.yaml`` of a pushed model names, with the project's wrappers it lists. This runs
    the env's code with the file's ``env_kwargs``: use it for repositories you trust.

    Args:
        source: a local folder written by ``neuromod-rl push``, or a Hub repository id ``USER/NAME``.
        revision: for a repository: a branch, tag or commit.
        download: for a repository: ``download(repo_id, revision) -> folder``; default :func:`hf_download`.
    """
    return make_exported_env(_weights_of(source, revision, download))


def hf_download(repo_id: str, revision: str | None = None) -> Path:
    """The local folder of the Hub repository ``repo_id`` holding the files :func:`load` reads (only
    those are downloaded), from ``huggingface_hub``'s cache.

    Args:
        repo_id: ``USER/NAME``.
        revision: a branch, tag or commit (default: the main branch).
    """
    require("hub", f"loading {repo_id} from the Hugging Face Hub", ("huggingface_hub",))
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(NEEDED),
                                      library_name="neuromod-rl"))
    except (HfHubHTTPError, LocalEntryNotFoundError, ConnectionError) as err:
        raise UserError(f"cannot download {repo_id} from the Hugging Face Hub ({safe_yaml.truncate(str(err), 300)}). "
                        "Check the repository id (and revision), your connection, and for a private repository your "
                        "token (`hf auth login`).") from None


def _weights_of(source: str | Path, revision: str | None, download: Download | None) -> Path:
    """The checked ``model.safetensors`` of a local folder or a downloaded repository."""
    folder = Path(source)
    if not folder.is_dir():
        if not (isinstance(source, str) and _REPO_ID.fullmatch(source)):
            raise UserError(f"{safe_yaml.short_repr(str(source))} is neither a folder nor a Hub repository id "
                            "USER/NAME; pass the folder `neuromod-rl push` wrote or the repository's id.")
        folder = (download or hf_download)(check_repo_id(source), revision)
    return check_folder(folder)


def check_folder(folder: str | Path) -> Path:
    """The ``model.safetensors`` of a pushed folder, after the checks that come before reading it: no
    pickle anywhere in the folder, ``model.safetensors`` and ``config.yaml`` present, and ``config.yaml``
    the very config embedded in the weights (the one the model is rebuilt from). A :class:`UserError`
    names what is wrong and what to do.

    Args:
        folder: a folder written by ``neuromod-rl push`` (or downloaded from a repository).
    """
    folder = Path(folder)
    _refuse_pickles(folder)
    missing = [name for name in NEEDED if not (folder / name).is_file()]
    if missing:
        raise UserError(f"{folder} has no {' and no '.join(missing)}: it is not a model written by `neuromod-rl push` "
                        f"(which writes {', '.join(FILES)}). Push the run again, or pass the folder it wrote.")
    weights = folder / WEIGHTS
    embedded = exported_config(weights)
    data = safe_yaml.load_file(folder / CONFIG, f"{folder / CONFIG}", "Push the run again.")
    shown = validate(data, str(folder / CONFIG))
    if shown.model_dump() != embedded.model_dump():
        keys = sorted(k for k, v in shown.model_dump().items() if v != embedded.model_dump()[k])
        raise UserError(f"{folder / CONFIG} is not the config inside {WEIGHTS} (they differ in {keys}): the folder "
                        "was changed after it was pushed, and the model would not be what config.yaml says. Push "
                        "the run again.")
    return weights


def _refuse_pickles(folder: Path) -> None:
    """Refuse a folder with a pickle in it: loading never opens one, and a pickle beside the weights is
    a file someone may open by mistake, running code stored in it."""
    found: list[str] = []
    for i, path in enumerate(p for p in folder.rglob("*") if not _hidden(p.relative_to(folder))):
        if i >= _MAX_FILES:
            raise UserError(f"{folder} holds more than {_MAX_FILES} files; a pushed model holds {len(FILES)}. Pass "
                            "the folder `neuromod-rl push` wrote.")
        if path.is_file() and path.name not in FILES and _is_pickle(path):
            found.append(str(path.relative_to(folder)))
    if found:
        raise UserError(f"{folder} holds {found[:5]}, in a pickle format (loading one runs code stored in it). A "
                        f"neuromod-rl model needs none: it loads from {WEIGHTS} and {CONFIG}. Delete those files, or "
                        "load only a folder whose author you trust with the tool that wrote them.")


def _hidden(relative: Path) -> bool:
    """Files the Hub's own tools keep (``.cache/huggingface``, ``.git``): not part of the model."""
    return relative.parts[0] in (".cache", ".git")


def _is_pickle(path: Path) -> bool:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4).startswith(_PICKLE_STARTS)
    except OSError:
        return False


def describe(pushed: Pushed) -> str:
    """What :func:`push` did, for the command line.

    Args:
        pushed: its result.
    """
    lines = [f"Wrote {pushed.folder}: {', '.join(pushed.files)}"]
    if pushed.onnx_note:
        lines.append(f"No ONNX graph: {pushed.onnx_note}")
    lines.append(f"Uploaded: {pushed.url}" if pushed.url else "Dry run: nothing uploaded.")
    return "\n".join(lines)
