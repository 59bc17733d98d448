// The kiosk: follows the gate's state over server-sent events and shows the
// bilingual instruction for it; during face capture it shows the camera with the
// face guide and the face pipeline's guidance. Spoken prompts play when enabled.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let messages = {};
  let current = null;
  let speak = localStorage.getItem("egate-sound") !== "off";
  let previewTimer = null;
  const audio = new Audio();

  function setSound(on) {
    speak = on;
    localStorage.setItem("egate-sound", on ? "on" : "off");
    $("sound").textContent = on ? "Âm thanh: bật / Sound: on" : "Âm thanh: tắt / Sound: off";
    $("sound").setAttribute("aria-pressed", String(on));
  }

  let lastGuidance = null;

  function say(key) {
    if (!speak) return;
    const parts = ["vi", "en"].map((l) => `/kiosk/speech/${key}/${l}.wav`);
    let i = 0;
    audio.onended = () => { if (++i < parts.length) { audio.src = parts[i]; audio.play().catch(() => {}); } };
    audio.src = parts[0];
    audio.play().catch(() => {});
  }

  function preview(on) {
    $("camera").hidden = !on;
    if (on && !previewTimer) {
      const img = $("preview");
      const tick = () => { img.src = "/kiosk/camera.jpg?t=" + Date.now(); };
      img.onerror = () => {};
      tick();
      previewTimer = setInterval(tick, 250);
    } else if (!on && previewTimer) {
      clearInterval(previewTimer);
      previewTimer = null;
    }
  }

  function show(ev) {
    const m = messages[ev.state] || messages["referred"] || { vi: "", en: "", tone: "stop" };
    document.body.className = "tone-" + m.tone;
    $("msg-vi").textContent = m.vi;
    $("msg-en").textContent = m.en;
    $("state").textContent = ev.state;
    $("state").dataset.state = ev.state;
    // guidance during the capture; on a referral, the one reason the kiosk names (a repeat attempt)
    const g = (ev.state === "face_capture" || ev.state === "referred") && ev.guidance_vi;
    $("guidance").hidden = !g;
    if (g) { $("g-vi").textContent = ev.guidance_vi; $("g-en").textContent = ev.guidance_en || ""; }
    // a liveness challenge (blink / turn / nod) is the one thing to do now: shown larger, with a sign
    $("guidance").dataset.challenge = g && /^challenge_(blink|turn_left|turn_right|look_up|look_down)$/.test(ev.guidance)
      ? ev.guidance.slice(10) : "";
    preview(ev.state === "face_capture");
    if (ev.state !== current) say(g && ev.state === "referred" ? "guidance/" + encodeURIComponent(ev.guidance)
                                                                : encodeURIComponent(ev.state));   // the named referral says it all
    else if (g && ev.guidance && ev.guidance !== lastGuidance) say("guidance/" + encodeURIComponent(ev.guidance));
    lastGuidance = g ? ev.guidance : null;
    current = ev.state;
  }

  function connect() {
    const es = new EventSource("/kiosk/events");
    es.onmessage = (e) => { try { show(JSON.parse(e.data)); } catch (err) { /* ignore a bad frame */ } };
    es.onerror = () => { es.close(); setTimeout(connect, 2000); };
  }

  $("sound").addEventListener("click", () => setSound(!speak));
  setSound(speak);
  fetch("/api/kiosk/info").then((r) => r.json()).then((i) => {
    if (i.demo_note) { $("demo-note").textContent = i.demo_note; $("demo-note").hidden = false; }
  }).catch(() => {});
  fetch("/api/kiosk/messages").then((r) => r.json()).then((m) => { messages = m; connect(); });
})();
