"""The forced photo-z web app (Flask): ``mantis-data serve --checkpoint PATH``.

    GET  /                      the page: a coordinate form and a CSV upload; ?ra=&dec= shows a result
    POST /batch                 the page with a table for an uploaded CSV (field ``file``)
    GET  /api/photoz?ra=&dec=   JSON: the numbers, flags and (``pmf=0`` to leave it out) the PMF
    GET  /api/photoz.png?ra=&dec=   the figure (nine cutouts, PMF with intervals)

Every single-coordinate request takes ``calibrated=1`` (the CalPIT-recalibrated PMF beside the raw one;
the server needs ``--calibrator``) and ``explain=1`` (the band importance of the galaxy: exact Shapley
values and MM-SHAP, computed synchronously on request: seconds for small models, minutes for ConvNeXt-L
on a CPU).
    POST /api/batch             JSON list for a CSV (a ``file`` upload, or the CSV as the request body)

Errors never show a traceback: a coordinate that cannot be read or is out of range answers 400, a
coordinate without coverage or rejected by the release's quality rules 422, a cutout service that fails
503, too large an upload 413, anything unexpected 500 (logged on the server); the API's body is
``{"error": <message>, "kind": ...}``, the page shows the message. One ``ForcedPhotoZ`` (one model in
memory, one HTTP client, one cutout cache) serves every request, from Flask's threads.
"""

from __future__ import annotations

import base64

from ..errors import InputDataError, MantisDataError
from ..photoz import CoordinateError, ForcedPhotoZ, PhotoZResult, parse_coordinate

MAX_UPLOAD_BYTES = 1 << 20
"""Largest CSV upload accepted (bytes)."""

STATUS = {"ok": 200, "bad_input": 400, "not_configured": 400, "no_coverage": 422, "rejected": 422, "service": 503,
          "internal": 500}
"""HTTP status of each outcome kind."""

_TITLES = {"bad_input": "This input cannot be used", "no_coverage": "No coverage",
           "rejected": "The cutouts fail the quality rules", "service": "A cutout service is not answering",
           "not_configured": "Not available on this server", "too_large": "Upload too large", "internal": "Internal error", "not_found": "Not found"}


class AppError(Exception):
    """An outcome that is not a prediction: ``kind`` (a STATUS key), a one-line ``message``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


def explain(result: PhotoZResult) -> AppError:
    """The user-facing error of a result without a prediction."""
    where = f"RA {result.ra:.6f}, Dec {result.dec:+.6f}"
    reason = result.reason or ""
    if result.kind == "no_coverage":
        survey = reason.split("_", 1)[0]
        extra = " (Pan-STARRS covers Dec > -30 deg)" if survey == "ps1" else ""
        return AppError("no_coverage", f"no {survey} coverage at {where}{extra}: the model needs all three surveys ({reason})")
    if result.kind == "service":
        return AppError("service", f"a cutout service failed for {where}: {reason}; try again later")
    return AppError("rejected", f"the cutouts at {where} fail the release's quality rules: {reason}")


def flag_list(result: PhotoZResult) -> list[str]:
    """Short texts of the flags that are set."""
    out = [k for k in ("no_galex_coverage", "below_dec_-30", "outside_ps1") if result.flags.get(k)]
    frac = result.flags.get("ps1_nan_frac")
    if frac is not None and (frac > 0).any():
        out.append("ps1_nan_frac " + " ".join(f"{b}:{100 * x:.2f}%" for b, x in zip("grizy", frac, strict=True) if x > 0))
    return out


def create_app(predictor: ForcedPhotoZ, max_batch: int = 200):
    """The Flask app around one predictor (shared by all requests and threads)."""
    from flask import Flask, Response, jsonify, render_template_string, request
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    from ..photoz_plot import figure_png
    from .pages import PAGE

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    app.config["predictor"] = predictor

    def coordinate() -> tuple[float, float]:
        ra, dec = request.values.get("ra"), request.values.get("dec")
        if ra is None or dec is None:
            raise AppError("bad_input", "give both ra and dec (degrees, or sexagesimal: RA in hours, Dec in degrees)")
        try:
            return parse_coordinate(ra, dec)
        except CoordinateError as exc:
            raise AppError("bad_input", str(exc)) from None

    def flag(name: str) -> bool:
        return request.values.get(name, "0").strip().lower() in ("1", "true", "yes", "on")

    def predict(ra: float, dec: float) -> PhotoZResult:
        want_cal, want_explain = flag("calibrated"), flag("explain")
        if want_cal and predictor.calibrator is None:
            raise AppError("not_configured", "this server has no calibrator: start it with "
                           "`mantis-data serve --checkpoint PATH --calibrator DIR` (a folder of `mantis-data calibrate fit`)")
        result = predictor.predict([ra], [dec], keep_images=True)[0]
        if not result.ok:
            raise explain(result)
        if not want_cal:
            result.calibrated = None
        if want_explain:
            try:
                predictor.explain(result)
            except ImportError as exc:
                raise AppError("not_configured", f"band importance needs the explain extra: "
                               f"pip install 'mantis-data[explain]' ({exc})") from None
            except InputDataError as exc:
                raise AppError("bad_input", str(exc)) from None
        return result

    def page(status: int = 200, **kw):
        args = {"ra": request.values.get("ra"), "dec": request.values.get("dec"), "max_batch": max_batch,
                "has_calibrator": predictor.calibrator is not None, "show_cal": flag("calibrated"), **kw}
        return render_template_string(PAGE, **args), status

    def api_error(err: AppError):
        return jsonify({"error": err.message, "kind": err.kind}), STATUS.get(err.kind, 500)

    @app.get("/")
    def index():
        if request.args.get("ra") is None and request.args.get("dec") is None:
            return page()
        try:
            result = predict(*coordinate())
        except AppError as err:
            return page(STATUS[err.kind], error=err.message, error_title=_TITLES[err.kind])
        png = base64.b64encode(figure_png(result)).decode("ascii")
        return page(result=result, flags=flag_list(result), png=png)

    @app.get("/api/photoz")
    def api_photoz():
        try:
            result = predict(*coordinate())
        except AppError as err:
            return api_error(err)
        out = result.to_dict(pmf=request.args.get("pmf", "1") not in ("0", "false", "no"))
        out["flag_list"] = flag_list(result)
        return jsonify(out)

    @app.get("/api/photoz.png")
    def api_png():
        try:
            result = predict(*coordinate())
        except AppError as err:
            return api_error(err)
        return Response(figure_png(result), mimetype="image/png")

    def run_batch() -> list[dict]:
        from ..photoz_batch import read_coords

        upload = request.files.get("file") if request.mimetype == "multipart/form-data" else None
        data = upload.read() if upload is not None else request.get_data()
        if not data:
            raise AppError("bad_input", "upload a CSV with ra and dec columns (form field 'file', or the request body)")
        try:
            cat = read_coords(data, name=getattr(upload, "filename", None) or "the upload")
        except InputDataError as exc:
            raise AppError("bad_input", str(exc)) from None
        n = len(cat["row"])
        if n == 0 or n > max_batch:
            raise AppError("bad_input", f"the CSV has {n} rows; give 1 to {max_batch} (use `mantis-data photoz --coords` for more)")
        rows, good = [], []
        for i in range(n):
            row = {"id": str(cat["target_id"][i]), "ra": None, "dec": None, "ok": False}
            try:
                row["ra"], row["dec"] = parse_coordinate(cat["ra_text"][i], cat["dec_text"][i])
                good.append(i)
            except CoordinateError as exc:
                row.update(reason=f"bad_coordinate: {exc}", kind="bad_input")
            rows.append(row)
        if good:
            results = predictor.predict([rows[i]["ra"] for i in good], [rows[i]["dec"] for i in good])
            for i, r in zip(good, results, strict=True):
                rows[i].update(r.to_dict(pmf=False), id=rows[i]["id"], flag_list=flag_list(r))
        return rows

    @app.post("/api/batch")
    def api_batch():
        try:
            return jsonify({"results": run_batch()})
        except AppError as err:
            return api_error(err)

    @app.post("/batch")
    def batch_page():
        try:
            rows = run_batch()
        except AppError as err:
            return page(STATUS[err.kind], error=err.message, error_title=_TITLES[err.kind])
        table = []
        for r in rows:
            ok = r.get("ok")
            table.append({
                "id": r["id"], "ok": ok,
                "ra": "" if r["ra"] is None else f"{r['ra']:.6f}", "dec": "" if r["dec"] is None else f"{r['dec']:+.6f}",
                "z": f"{r['z_mean']:.6f}" if ok else "",
                "interval": f"{r['intervals']['0.68'][0]:.4f} - {r['intervals']['0.68'][1]:.4f}" if ok else "",
                "note": ", ".join(r.get("flag_list", [])) if ok else r.get("reason", ""),
            })
        return page(batch=table)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        err = AppError("too_large", f"the upload is over {MAX_UPLOAD_BYTES // 1024} KiB; use `mantis-data photoz --coords` for big catalogs")
        if request.path.startswith("/api/"):
            return jsonify({"error": err.message, "kind": "too_large"}), 413
        return page(413, error=err.message, error_title=_TITLES["too_large"])

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if request.path.startswith("/api/"):
            return jsonify({"error": exc.description, "kind": exc.name.lower().replace(" ", "_")}), exc.code
        return page(exc.code or 500, error=exc.description, error_title=exc.name)

    @app.errorhandler(Exception)
    def internal(exc):
        app.logger.exception("unexpected error on %s", request.path)  # the traceback goes to the server log only
        if isinstance(exc, MantisDataError):
            message = f"{type(exc).__name__}: {exc}"
        else:
            message = f"unexpected {type(exc).__name__}; the server log has the details"
        if request.path.startswith("/api/"):
            return jsonify({"error": message, "kind": "internal"}), 500
        return page(500, error=message, error_title=_TITLES["internal"])

    return app


__all__ = ["STATUS", "AppError", "create_app", "explain", "flag_list"]
