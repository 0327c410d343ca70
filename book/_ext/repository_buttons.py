"""One setting for the repository: with repository.url in _config.yml empty, the site shows no button that needs it."""

# jupyter-book hands repository.url to the theme as html_theme_options["repository_url"]. The buttons that link into
# the repository (repository, edit this page, open an issue, show source) and the launch buttons (Binder, Colab, which
# open a notebook from it) are chosen in _config.yml; while the URL is empty this turns them all off, rather than
# linking to nowhere. paper_code.py shows its source references as plain text then.

from __future__ import annotations

REPOSITORY_BUTTONS = ("use_repository_button", "use_edit_page_button", "use_issues_button", "use_source_button")


def on_config_inited(app, config) -> None:
    """Without a repository URL, no repository buttons and no launch buttons."""
    options = config.html_theme_options
    if not (options.get("repository_url") or "").strip():
        options.update(dict.fromkeys(REPOSITORY_BUTTONS, False), launch_buttons={})


def setup(app):
    app.connect("config-inited", on_config_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
