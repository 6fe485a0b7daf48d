// The playground: post the form (session + CSRF token, same origin), read the gateway's SSE
// stream with fetch and a ReadableStream, and show the text as it arrives. No library.
(function () {
  "use strict";
  var form = document.getElementById("playground");
  if (!form || !window.fetch || !window.TextDecoder) { return; }  // without it: a plain post
  var answer = document.getElementById("answer");
  var state = document.getElementById("run-state");
  var figures = document.getElementById("figures");
  var button = document.getElementById("run");

  function set(id, text) { document.getElementById(id).textContent = text; }

  function showSummary(s) {
    set("fig-latency", s.latency_ms + " ms");
    set("fig-ttft", s.ttft_ms === null ? "n/a" : s.ttft_ms + " ms");
    set("fig-tokens", (s.input_tokens === null ? "?" : s.input_tokens) + " / " +
        (s.output_tokens === null ? "?" : s.output_tokens));
    set("fig-cost", s.cost_usd === null ? "not priced" : "$" + Number(s.cost_usd).toFixed(6));
    set("fig-model", s.model || "");
    set("fig-request", s.request_id || "");
    set("fig-trace", s.trace_id || "none");
    figures.hidden = false;
  }

  function handle(block) {
    var name = "message", data = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) { name = line.slice(6).trim(); }
      else if (line.indexOf("data:") === 0) { data.push(line.slice(5).replace(/^ /, "")); }
    });
    var text = data.join("\n");
    if (!text || text === "[DONE]") { return; }
    var obj;
    try { obj = JSON.parse(text); } catch (e) { return; }
    if (name === "summary") { showSummary(obj); state.textContent = "Done."; return; }
    if (obj.error) {
      state.textContent = "Error: " + (obj.error.message || "the call failed");
      return;
    }
    var choice = obj.choices && obj.choices[0];
    var piece = choice && choice.delta && choice.delta.content;
    if (piece) { answer.textContent += piece; }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    answer.textContent = "";
    figures.hidden = true;
    state.textContent = "Running…";
    button.disabled = true;
    var body = new URLSearchParams(new FormData(form));
    fetch(form.action, {
      method: "POST", body: body, credentials: "same-origin",
      headers: {"content-type": "application/x-www-form-urlencoded"}
    }).then(function (response) {
      if (!response.ok || !response.body) {
        state.textContent = "Error: the server answered " + response.status +
          (response.status === 403 ? " (sign in again, or reload the page)" : "");
        return null;
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { if (buffer.trim()) { handle(buffer); } return null; }
          buffer += decoder.decode(chunk.value, {stream: true}).replace(/\r\n/g, "\n");
          var cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            handle(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
          }
          return pump();
        });
      }
      return pump();
    }).catch(function (e) {
      state.textContent = "Error: " + e.message;
    }).then(function () { button.disabled = false; });
  });
}());
