// Inside the network: the switches (diagram, one-step mode), kept in the URL with the rest
// of the configuration but changed on the running network, without a reset; and the
// frame's inside parts handed to diagram.js and gradients.js.
"use strict";

const Inside = (() => {
  const SWITCHES = ["diagram", "onestep"];

  // The switches as the configuration sends them and the URL keeps them: "1" or "0".
  function values() {
    const c = {};
    for (const key of SWITCHES) c[key] = document.getElementById(key).checked ? "1" : "0";
    return c;
  }

  // A value the server refuses ("maybe") is kept as it is, so that the server says why.
  let given = {};
  function readHash(params, defaults) {
    given = {};
    for (const key of SWITCHES) {
      const value = params.has(key) ? params.get(key) : (defaults[key] ? "1" : "0");
      if (!["0", "1", "true", "false"].includes(value.toLowerCase())) given[key] = value;
      document.getElementById(key).checked = ["1", "true"].includes(value.toLowerCase());
    }
    show();
  }
  function config() { return { ...values(), ...given }; }

  function show() {
    const on = document.getElementById("diagram").checked;
    document.getElementById("network").hidden = !on;
    document.getElementById("step").title = document.getElementById("onestep").checked
      ? "one batch, then freeze and show its backward pass" : "one epoch";
  }

  // page: { run() -> the run's id or null, post(url, body), writeHash(), showError(text) }
  function listen(how) {
    page = how;
    for (const key of SWITCHES) {
      document.getElementById(key).addEventListener("change", async () => {
        delete given[key];
        show();
        page.writeHash();
        const run = await page.run();
        if (!run) return;
        try { await page.post(`/api/sessions/${run}/view`, { [key]: values()[key] === "1" }); }
        catch (e) { page.showError(e.message); }
      });
    }
  }

  let page = null;
  function draw(frame) {
    if (frame.view) {  // the server's word: play ends one-step mode
      let changed = false;
      for (const key of SWITCHES) {
        const box = document.getElementById(key);
        if (!(key in given) && box.checked !== frame.view[key]) { box.checked = frame.view[key]; changed = true; }
      }
      if (changed) { show(); if (page) page.writeHash(); }
    }
    if (frame.diagram !== undefined) Diagram.draw(document.getElementById("network"), frame.diagram);
    Gradients.draw(frame);
  }

  function reset() { Gradients.reset(); Diagram.reset(); }

  return { config, readHash, listen, draw, reset };
})();
