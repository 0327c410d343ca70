// Loaded (deferred) after MathJax on pages with widgets (see book/_ext/vendored_js.py).
// ipywidgets' HTML manager typesets labels with the MathJax 2 call MathJax.Hub.Queue(["Typeset", hub, element]);
// the site loads MathJax 3, which has typesetPromise instead. Forward the old call to the new one.
if (window.MathJax && window.MathJax.startup && !window.MathJax.Hub) {
  window.MathJax.Hub = {
    Queue: function (command) {
      return MathJax.startup.promise.then(function () { return MathJax.typesetPromise([command[2]]); });
    },
  };
}
