// The object under the cursor, named beside the slice label ("object 17: 0.52 µm³"): the pixel
// under the mouse (plotly's axis mapping) is looked up in the newest segmentation by the
// /objects/<vid>/<plane>/<index>/at route. Requests are spaced (one at a time, newest wins).
(function () {
    const TILE = /^(.*)\/tiles\/(\d+)\/(xy|xz|yz)\/(\d+)\.png/;
    let busy = false, queued = null, shownKey = "";

    function show(text) {
        const el = document.getElementById("viewer-object-under-cursor");
        if (el && el.textContent !== text) { el.textContent = text; }
    }

    function ask(url) {
        if (busy) { queued = url; return; }
        busy = true;
        fetch(url, {credentials: "same-origin"})
            .then(r => r.ok ? r.json() : {text: ""})
            .then(j => show(j.text || ""), () => show(""))
            .finally(() => { busy = false; if (queued) { const u = queued; queued = null; ask(u); } });
    }

    function pixel(gd, ev) {
        const fl = gd._fullLayout, xa = fl && fl.xaxis, ya = fl && fl.yaxis;
        if (!xa || !ya || !xa.p2c) { return null; }
        const box = gd.getBoundingClientRect();
        const px = ev.clientX - box.left - xa._offset, py = ev.clientY - box.top - ya._offset;
        if (px < 0 || py < 0 || px > xa._length || py > ya._length) { return null; }
        return [Math.round(ya.p2c(py)), Math.round(xa.p2c(px))];
    }

    function onMove(ev) {
        const gd = ev.currentTarget;
        const raw = gd.layout && gd.layout.images && gd.layout.images[0] && gd.layout.images[0].source;
        const m = raw && raw.match(TILE), rc = pixel(gd, ev);
        if (!m || !rc) { shownKey = ""; show(""); return; }
        const key = `${m[2]}/${m[3]}/${m[4]}/${rc[0]}/${rc[1]}`;
        if (key === shownKey) { return; }
        shownKey = key;
        ask(`${m[1]}/objects/${m[2]}/${m[3]}/${m[4]}/at?r=${rc[0]}&c=${rc[1]}`);
    }

    setInterval(function () {   // the graph is (re)created by Dash after load: attach once per element
        const gd = document.querySelector("#viewer-graph .js-plotly-plot");
        if (gd && !gd._activesegHover) {
            gd._activesegHover = true;
            gd.addEventListener("mousemove", onMove);
            gd.addEventListener("mouseleave", () => { shownKey = ""; show(""); });
        }
    }, 1000);
})();
