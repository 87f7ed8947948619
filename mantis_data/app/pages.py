"""The web app's HTML (Jinja templates, autoescaped by Flask): one page with the form, the result, a batch table."""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Mantis Shrimp forced photo-z</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1320px; color: #222; }
 h1 { font-size: 1.4em; margin-bottom: .2em; }
 form { display: inline-block; margin: .4em 1.5em .4em 0; padding: .6em .8em; border: 1px solid #ccc; border-radius: 6px; }
 label { margin-right: .6em; }
 input[type=text] { width: 11em; }
 .error { background: #fde8e8; border: 1px solid #e0a0a0; padding: .7em 1em; border-radius: 6px; margin: 1em 0; }
 .result table, .batch table { border-collapse: collapse; margin: .6em 0; }
 td, th { padding: .2em .8em; border-bottom: 1px solid #eee; text-align: left; }
 .flag { display: inline-block; background: #fff3cd; border: 1px solid #e6d28a; border-radius: 4px; padding: 0 .4em; margin-right: .3em; }
 img { max-width: 100%; border: 1px solid #eee; }
 .muted { color: #777; font-size: .9em; }
</style>
</head>
<body>
<h1>Mantis Shrimp forced photo-z</h1>
<p class="muted">A redshift probability distribution at any coordinate from fresh GALEX, Pan-STARRS and unWISE
cutouts. Degrees (150.1, 2.2) or sexagesimal (RA in hours 10:00:24, Dec in degrees +02:12:00).
JSON: <code>/api/photoz?ra=..&amp;dec=..</code> (<code>&amp;calibrated=1</code>: the CalPIT-recalibrated PMF too;
<code>&amp;explain=1</code>: the band importance, computed on request); CSV: <code>POST /api/batch</code>.</p>
<form id="coord-form" method="get" action="/">
 <label>RA <input type="text" id="ra" name="ra" value="{{ ra or '' }}"></label>
 <label>Dec <input type="text" id="dec" name="dec" value="{{ dec or '' }}"></label>
 <label title="{{ 'the CalPIT-recalibrated PMF beside the raw one' if has_calibrator else 'start the server with --calibrator DIR' }}">
  <input type="checkbox" id="calibrated" name="calibrated" value="1"{% if show_cal %} checked{% endif %}{% if not has_calibrator %} disabled{% endif %}>
  calibrated PMF{% if not has_calibrator %} <span class="muted">(no calibrator on this server)</span>{% endif %}</label>
 <button type="submit" id="go">Estimate redshift</button>
 <button type="submit" id="explain" name="explain" value="1"
  onclick="document.getElementById('computing').style.display='inline'">&hellip; with band importance</button>
 <span id="computing" class="muted" style="display:none">computing the band importance (520 model calls; minutes for ConvNeXt-L on a CPU)&hellip;</span>
</form>
<form id="batch-form" method="post" action="/batch" enctype="multipart/form-data">
 <label>CSV (ra, dec[, id]; at most {{ max_batch }} rows) <input type="file" id="csv" name="file" accept=".csv,text/csv"></label>
 <button type="submit" id="upload">Run batch</button>
</form>
{% if error %}
<div class="error" id="error"><strong>{{ error_title }}</strong><br><span id="error-message">{{ error }}</span></div>
{% endif %}
{% if result %}
<div class="result" id="result">
 <table>
  <tr><th>RA, Dec (deg)</th><td id="coord">{{ "%.6f"|format(result.ra) }}, {{ "%+.6f"|format(result.dec) }}</td></tr>
  {% if result.ok %}
  <tr><th>z (expectation)</th><td id="z-mean">{{ "%.6f"|format(result.z_mean) }}</td></tr>
  <tr><th>mode</th><td id="z-mode">{{ "%.3f"|format(result.z_mode) }}</td></tr>
  <tr><th>68% interval</th><td><span id="z-lo68">{{ "%.4f"|format(result.intervals[0.68][0]) }}</span> &ndash;
      <span id="z-hi68">{{ "%.4f"|format(result.intervals[0.68][1]) }}</span></td></tr>
  <tr><th>95% interval</th><td><span id="z-lo95">{{ "%.4f"|format(result.intervals[0.95][0]) }}</span> &ndash;
      <span id="z-hi95">{{ "%.4f"|format(result.intervals[0.95][1]) }}</span></td></tr>
  {% if result.calibrated %}
  <tr class="cal"><th>calibrated z (CalPIT)</th><td id="cal-z-mean">{{ "%.6f"|format(result.calibrated.z_mean) }}</td></tr>
  <tr class="cal"><th>calibrated mode</th><td id="cal-z-mode">{{ "%.3f"|format(result.calibrated.z_mode) }}</td></tr>
  <tr class="cal"><th>calibrated 68% interval</th><td><span id="cal-z-lo68">{{ "%.4f"|format(result.calibrated.intervals[0.68][0]) }}</span> &ndash;
      <span id="cal-z-hi68">{{ "%.4f"|format(result.calibrated.intervals[0.68][1]) }}</span></td></tr>
  <tr class="cal"><th>calibrated 95% interval</th><td><span id="cal-z-lo95">{{ "%.4f"|format(result.calibrated.intervals[0.95][0]) }}</span> &ndash;
      <span id="cal-z-hi95">{{ "%.4f"|format(result.calibrated.intervals[0.95][1]) }}</span></td></tr>
  {% endif %}
  <tr><th>E(B-V) csfd, planck</th><td id="ebv">{{ "%.4f"|format(result.ebv[0]) }}, {{ "%.4f"|format(result.ebv[1]) }}</td></tr>
  {% endif %}
  <tr><th>flags</th><td id="flags">{% for f in flags %}<span class="flag">{{ f }}</span>{% else %}none{% endfor %}</td></tr>
 </table>
 {% if result.explanation %}
 <table id="importance">
  <tr><th>band importance</th>{% for b in result.explanation.shapley %}<th>{{ b }}</th>{% endfor %}</tr>
  <tr><th>Shapley (redshift)</th>{% for b, v in result.explanation.shapley.items() %}<td id="shap-{{ b }}">{{ "%+.5f"|format(v) }}</td>{% endfor %}</tr>
  <tr><th>MM-SHAP</th>{% for b, v in result.explanation.mm_shap.items() %}<td id="mm-{{ b }}">{{ "%.3f"|format(v) }}</td>{% endfor %}</tr>
 </table>
 <p class="muted" id="importance-note">V(all) = {{ "%.6f"|format(result.explanation.v_all) }}, V(none) = {{ "%.6f"|format(result.explanation.v_none) }}
 (every band at its baseline); the values sum to V(all) &minus; V(none).
 Surveys: {% for s, v in result.explanation.survey_shapley.items() %}{{ s }} {{ "%+.5f"|format(v) }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>
 {% endif %}
 {% if png %}<img id="figure" alt="cutouts and P(z)" src="data:image/png;base64,{{ png }}">{% endif %}
</div>
{% endif %}
{% if batch %}
<div class="batch" id="batch">
 <p id="batch-summary">{{ batch|length }} coordinates, {{ batch|selectattr("ok")|list|length }} with a prediction.</p>
 <table>
  <tr><th>id</th><th>RA</th><th>Dec</th><th>z</th><th>68% interval</th><th>flags or reason</th></tr>
  {% for row in batch %}
  <tr class="batch-row"><td>{{ row.id }}</td><td>{{ row.ra }}</td><td>{{ row.dec }}</td>
   <td class="batch-z">{{ row.z }}</td><td>{{ row.interval }}</td><td>{{ row.note }}</td></tr>
  {% endfor %}
 </table>
</div>
{% endif %}
</body>
</html>
"""
