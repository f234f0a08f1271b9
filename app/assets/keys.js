// Viewer keyboard: left / j = previous slice, right / k = next (clicks the step buttons, whose
// clientside callback moves the slider); Ctrl+Z (Cmd+Z) = Undo on the slice in view (clicks Undo);
// [ and ] = thinner / wider brush. Ignored while typing in a field or on a focused slider.
// Enter in a slider's number box (contrast, opacities) applies it: Dash commits those on blur only.
function activesegTyping(t) {
    return t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName) ||
                 (t.closest && t.closest("[role=slider]")));
}

function activesegClick(id, ev) {
    const btn = document.getElementById(id);
    if (btn) { ev.preventDefault(); btn.click(); }
}

function activesegBrush(delta) {
    const thumb = document.querySelector("#paint-brush-width [role=slider]");
    const now = thumb ? Number(thumb.getAttribute("aria-valuenow")) : NaN;
    if (!Number.isFinite(now) || !window.dash_clientside || !dash_clientside.set_props) { return; }
    dash_clientside.set_props("paint-brush-width", {value: Math.min(40, Math.max(1, now + delta))});
}

document.addEventListener("keydown", function (ev) {
    if (activesegTyping(ev.target) || ev.altKey) { return; }
    if (ev.ctrlKey || ev.metaKey) {
        const key = ev.key.toLowerCase();
        if (key === "z" && !ev.shiftKey) { activesegClick("paint-undo-btn", ev); }
        if ((key === "z" && ev.shiftKey) || key === "y") { activesegClick("paint-redo-btn", ev); }
        return;
    }
    const id = {ArrowLeft: "viewer-slice-prev", j: "viewer-slice-prev",
                ArrowRight: "viewer-slice-next", k: "viewer-slice-next"}[ev.key];
    if (id) { activesegClick(id, ev); return; }
    if (ev.key === "[" || ev.key === "]") { ev.preventDefault(); activesegBrush(ev.key === "]" ? 2 : -2); }
});

document.addEventListener("keydown", function (ev) {
    const t = ev.target;
    if (ev.key === "Enter" && t && t.tagName === "INPUT" && /slider[a-z-]*input/.test(t.className || "")) {
        ev.preventDefault();
        t.blur();
    }
});
