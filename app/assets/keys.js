// Keyboard slice stepping: left / j = previous, right / k = next (clicks the viewer's step buttons,
// whose clientside callback moves the slider). Ignored while typing in a field or on a focused slider.
document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    const t = ev.target;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName) ||
              (t.closest && t.closest("[role=slider]")))) { return; }
    const id = {ArrowLeft: "viewer-slice-prev", j: "viewer-slice-prev",
                ArrowRight: "viewer-slice-next", k: "viewer-slice-next"}[ev.key];
    const btn = id && document.getElementById(id);
    if (btn) { ev.preventDefault(); btn.click(); }
});
