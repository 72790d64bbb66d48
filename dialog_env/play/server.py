"""The play page: a Flask application over a :class:`~dialog_env.play.session.PlayHost`.

Routes (all HTML is escaped by Jinja's autoescaping; nothing the person types is ever markup):

- ``GET /``: what the two modes are, and buttons to start a dialog in each.
- ``POST /start`` (``mode``): start a dialog, then ``GET /dialog/<id>``.
- ``GET /dialog/<id>``: the dialog's page.
- ``POST /dialog/<id>/feedback`` (``turn``, ``text``), ``/pick`` (``turn``, ``image``),
  ``/more`` (``turn``), ``/give-up`` (``turn``): play; a mistake (empty or overlong feedback, a
  double submit, a stale tab) re-shows the page with the message and status 400 or 409.
- ``GET /picture/<index>.png?size=256|128``: an image of the split, drawn.

:func:`create_app` with ``startup_error`` serves that message on every page (status 503), e.g.
for a checkpoint that does not fit the catalogue.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, abort, redirect, render_template_string, request, url_for

from dialog_env.play.session import MAX_FEEDBACK_CHARACTERS, PlayDialog, PlayError, PlayHost
from dialog_env.render.frame import PictureSource
from dialog_env.render.png import png_bytes

__all__ = ["create_app"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; background: #fafaf5; color: #222; max-width: 1100px; }
.pictures { display: flex; gap: 2em; align-items: flex-start; }
figure { margin: 0; } figcaption { font-weight: 600; color: #1e3ca0; margin-bottom: .3em; }
img.picture { border: 2px solid #999; width: 256px; height: 256px; image-rendering: pixelated; }
img.found { border: 4px solid #009600; }
.message { background: #fff3cd; border: 1px solid #e0b000; padding: .6em; margin: 1em 0; }
.error { background: #fde2e1; border: 1px solid #c00; padding: .6em; margin: 1em 0; }
.unknown { color: #a04000; } .status { font-size: 1.2em; margin: 1em 0; }
.candidates { display: flex; flex-wrap: wrap; gap: .5em; }
.candidates button { padding: 0; border: 2px solid #999; background: none; cursor: pointer; }
.candidates img { width: 128px; height: 128px; display: block; }
ol.transcript li { margin: .3em 0; } ol.transcript img { width: 64px; height: 64px; vertical-align: middle; }
input[type=text] { width: 36em; font-size: 1.1em; padding: .3em; }
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title><style>{{ style }}</style></head>
<body>
<h1>{{ title }}</h1>
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
{% if startup_error %}<p class="error" id="startup-error">{{ startup_error }}</p>
{% elif dialog is none %}
<p>A shopper has a shoe in mind; the retrieval system shows a shoe from its catalogue of {{ num_images }}
images; the shopper says in words how the wanted shoe differs; the system shows another, for up to
{{ max_turns }} turns.</p>
<form method="post" action="{{ url_for('start') }}">
{% if 'shopper' in modes %}<p><button id="start-shopper" name="mode" value="shopper">You are the shopper</button>
 the agent <b>{{ agent_name }}</b> searches for the shoe you are shown, from your words.</p>{% endif %}
<p><button id="start-agent" name="mode" value="agent">You are the search engine</button>
 the simulated shopper ({{ user }}) describes a shoe you cannot see; you pick images.</p>
</form>
<p>Every dialog is appended to the log <code>{{ log_path }}</code>.</p>
{% else %}
<p id="turn" data-turn="{{ dialog.turn }}">Turn {{ dialog.turn }} of {{ max_turns }}
 {% if dialog.mode == 'shopper' %}(you are the shopper){% else %}(you are the search engine){% endif %}</p>
{% if dialog.message %}<p class="message" id="message">{{ dialog.message }}</p>{% endif %}
<div class="pictures">
{% if dialog.mode == 'shopper' or dialog.over %}
<figure><figcaption>{% if dialog.mode == 'shopper' %}your shoe (the agent cannot see it)
{% else %}the shopper's shoe{% endif %}</figcaption>
<img class="picture" id="target-picture" src="{{ url_for('picture', index=dialog.target) }}" alt="target"
 data-index="{{ dialog.target }}"></figure>{% endif %}
<figure><figcaption>{% if dialog.mode == 'shopper' %}the agent shows{% else %}you showed{% endif %}</figcaption>
<img class="picture{% if dialog.found %} found{% endif %}" id="shown-picture"
 src="{{ url_for('picture', index=dialog.shown[-1]) }}" alt="shown" data-index="{{ dialog.shown[-1] }}"></figure>
</div>
{% if dialog.over %}
<p class="status" id="status" data-found="{{ 'yes' if dialog.found else 'no' }}">
{% if dialog.found %}Found at turn {{ dialog.ranks|length - 1 }}.{% elif dialog.reason == 'gave up' %}Given up.
{% else %}Not found in {{ max_turns }} turns.{% endif %}</p>
<form method="post" action="{{ url_for('start') }}">
<button id="again" name="mode" value="{{ dialog.mode }}">Play again</button></form>
<p><a href="{{ url_for('index') }}">Back</a></p>
{% elif dialog.mode == 'shopper' %}
<form method="post" action="{{ url_for('feedback', dialog=dialog.dialog) }}" id="feedback-form"
 onsubmit="document.getElementById('submit').disabled = true;">
<input type="hidden" name="turn" value="{{ dialog.turn }}">
<p><label for="feedback">How does your shoe differ from the one shown?</label><br>
<input type="text" id="feedback" name="text" maxlength="{{ max_characters }}" autofocus autocomplete="off"
 placeholder="is black and has a higher heel"> <button id="submit">Send</button></p>
</form>
<form method="post" action="{{ url_for('give_up', dialog=dialog.dialog) }}"><input type="hidden" name="turn"
 value="{{ dialog.turn }}"><button id="give-up">Give up</button></form>
{% else %}
<p class="status" id="shopper-says">The shopper says: <b>{{ dialog.feedback[-1] }}</b></p>
<p>Pick the image to show next:</p>
<form method="post" action="{{ url_for('pick', dialog=dialog.dialog) }}" class="candidates"
 onsubmit="for (const b of this.querySelectorAll('button')) b.disabled = true;">
<input type="hidden" name="turn" value="{{ dialog.turn }}">
{% for index in dialog.candidates %}<button class="candidate" name="image" value="{{ index }}" data-index="{{ index }}">
<img src="{{ url_for('picture', index=index, size=128) }}" alt="image {{ index }}"></button>{% endfor %}
</form>
<form method="post" action="{{ url_for('more', dialog=dialog.dialog) }}"><input type="hidden" name="turn"
 value="{{ dialog.turn }}"><button id="more">Other images</button></form>
<form method="post" action="{{ url_for('give_up', dialog=dialog.dialog) }}"><input type="hidden" name="turn"
 value="{{ dialog.turn }}"><button id="give-up">Give up</button></form>
{% endif %}
<h2>So far</h2>
<ol class="transcript" start="0" id="transcript">
{% for turn in range(dialog.feedback|length) %}<li data-shown="{{ dialog.shown[turn] }}">
<img src="{{ url_for('picture', index=dialog.shown[turn], size=128) }}" alt="turn {{ turn }}">
{% if dialog.feedback[turn] %}&ldquo;{{ dialog.feedback[turn] }}&rdquo;{% else %}(the target){% endif %}
{% if dialog.mode == 'shopper' or dialog.over %} &middot; target rank {{ dialog.ranks[turn] }}{% endif %}
{% if dialog.unknown_words[turn] %}<span class="unknown"> &middot; words the agent does not know:
{% for word in dialog.unknown_words[turn] %}<b class="unknown-word">{{ word }}</b>
{%- if not loop.last %}, {% endif %}{% endfor %}
</span>{% endif %}</li>{% endfor %}
</ol>
{% endif %}
</body></html>
"""


def create_app(host: PlayHost | None, *, startup_error: str | None = None, user: str = "rule") -> Flask:
    """The Flask application of the play page.

    Args:
        host: the dialogs' host (``None`` only with ``startup_error``).
        startup_error: a message to serve on every page instead of playing (status 503).
        user: the simulated shopper's name, shown on the start page.
    """
    if host is None and startup_error is None:
        raise ValueError("create_app needs a host or a startup error")
    app = Flask("dialog_env.play")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024  # a form is a few hundred bytes
    pictures = PictureSource(host.catalog, cache_size=2048) if host is not None else None

    def page(dialog: PlayDialog | None = None, error: str | None = None, status: int = 200) -> tuple[str, int]:
        values: dict[str, Any] = {
            "title": "Find the shoe",
            "style": _STYLE,
            "dialog": dialog,
            "error": error,
            "startup_error": startup_error,
            "max_characters": MAX_FEEDBACK_CHARACTERS,
            "user": user,
        }
        if host is not None:
            values |= {
                "num_images": host.catalog.num_images,
                "max_turns": host.max_turns,
                "modes": host.modes,
                "agent_name": host.agent_name,
                "log_path": str(host.log.path),
            }
        return render_template_string(_PAGE, **values), status

    def dialog_or_404(name: str) -> PlayDialog:
        try:
            return host.get(name)
        except PlayError as error:
            abort(Response(page(error=str(error), status=404)[0], status=404))

    def turn_field() -> int:
        try:
            return int(request.form.get("turn", ""))
        except ValueError:
            raise PlayError("the form lacks its turn number; reload the page") from None

    def play(name: str, action: Any) -> Any:
        if startup_error is not None:
            return page(status=503)
        dialog = dialog_or_404(name)
        try:
            action(dialog)
        except PlayError as error:
            status = 409 if "out of date" in str(error) or "is over" in str(error) else 400
            return page(dialog, error=str(error), status=status)
        return redirect(url_for("show", dialog=name), code=303)

    @app.get("/")
    def index() -> Any:
        return page(status=503 if startup_error else 200)

    @app.post("/start")
    def start() -> Any:
        if startup_error is not None:
            return page(status=503)
        try:
            dialog = host.start(request.form.get("mode", ""))
        except PlayError as error:
            return page(error=str(error), status=400)
        return redirect(url_for("show", dialog=dialog.dialog), code=303)

    @app.get("/dialog/<dialog>")
    def show(dialog: str) -> Any:
        if startup_error is not None:
            return page(status=503)
        return page(dialog_or_404(dialog))

    @app.post("/dialog/<dialog>/feedback")
    def feedback(dialog: str) -> Any:
        return play(dialog, lambda d: host.submit_feedback(d, turn_field(), request.form.get("text", "")))

    @app.post("/dialog/<dialog>/pick")
    def pick(dialog: str) -> Any:
        def action(d: PlayDialog) -> None:
            try:
                image = int(request.form.get("image", ""))
            except ValueError:
                raise PlayError("pick one of the images on the page") from None
            host.pick(d, turn_field(), image)

        return play(dialog, action)

    @app.post("/dialog/<dialog>/more")
    def more(dialog: str) -> Any:
        return play(dialog, lambda d: host.more_candidates(d, turn_field()))

    @app.post("/dialog/<dialog>/give-up")
    def give_up(dialog: str) -> Any:
        return play(dialog, lambda d: host.give_up(d, turn_field()))

    @app.get("/picture/<int:index>.png")
    def picture(index: int) -> Any:
        if pictures is None or not 0 <= index < host.catalog.num_images:
            abort(404)
        size = request.args.get("size", "256")
        if size not in ("256", "128"):
            abort(400)
        response = Response(png_bytes(pictures(index, int(size))), mimetype="image/png")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    return app
