// Loaded before require.js on pages with widgets (see book/_ext/vendored_js.py).
// The ipywidgets HTML manager finds its icon fonts next to each module's URL, which require.js derives
// from this `paths` config: point every @jupyter-widgets module at the vendored copy in this site.
var require = (function () {
  var vendored = document.currentScript.src.replace(/[^/]*$/, "") + "vendor/html-manager";
  return { paths: { "@jupyter-widgets": vendored, "@jupyter-widgets/html-manager/dist": vendored } };
})();
