// MathJax 3 settings for pymdownx.arithmatex (generic mode): typeset only the
// \( \) and \[ \] it wraps in class "arithmatex". Loaded before
// javascripts/mathjax/tex-svg.js (see mkdocs.yml).
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
};
