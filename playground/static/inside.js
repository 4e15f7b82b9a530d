// Inside the network: the switches (diagram, one-step mode), kept in the URL with the rest
// of the configuration ("true"/"false", as controls.js writes switches) but changed on the
// running network, without a reset; and the frame's inside parts handed to diagram.js and
// gradients.js.
"use strict";

const Inside = (() => {
  const SWITCHES = ["diagram", "onestep"];
  const box = (key) => document.getElementById(key);
  let page = null;  // { run() -> the run's id or null, post(url, body), writeHash(), showError(text) }

  // controls.js's fieldValue/setField: a value the server refuses ("maybe") is kept as it
  // is until the user switches, so that the server says why.
  function config() {
    const c = {};
    for (const key of SWITCHES) c[key] = fieldValue(box(key));
    return c;
  }

  function readHash(params, defaults) {
    for (const key of SWITCHES) setField(box(key), params.has(key) ? params.get(key) : String(defaults[key]));
    show();
  }

  function show() {
    document.getElementById("network").hidden = !box("diagram").checked;
    document.querySelector("#diagram-view figcaption").hidden = !box("diagram").checked;
    document.getElementById("step").title = box("onestep").checked
      ? "one batch, then freeze and show its backward pass" : "one epoch";
  }

  function listen(how) {
    page = how;
    for (const key of SWITCHES) {
      box(key).addEventListener("change", async () => {
        delete box(key).dataset.raw;
        show();
        page.writeHash();
        const run = await page.run();
        if (!run) return;
        try { await page.post(`/api/sessions/${run}/view`, { [key]: box(key).checked }); }
        catch (e) { page.showError(e.message); }
      });
    }
  }

  function draw(frame) {
    if (frame.view) {  // the server's word: play ends one-step mode
      let changed = false;
      for (const key of SWITCHES) {
        if (box(key).dataset.raw === undefined && box(key).checked !== frame.view[key]) {
          box(key).checked = frame.view[key]; changed = true;
        }
      }
      if (changed) { show(); if (page) page.writeHash(); }
    }
    if (frame.diagram !== undefined) Diagram.draw(document.getElementById("network"), frame.diagram);
    Gradients.draw(frame);
  }

  function reset() { Gradients.reset(); Diagram.reset(); }

  return { config, readHash, listen, draw, reset };
})();
