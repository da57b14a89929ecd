// facetrust web page: plain JavaScript, no build step. Talks to the same server's /v1 API.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const state = {
    maxUpload: 50 * 1024 * 1024,
    objectUrls: [],
    detectToken: 0,
    protectToken: 0,
    original: null,
    overlay: null,
    result: null,
  };

  // ---- small helpers -------------------------------------------------------------------------
  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    if (parent) parent.appendChild(el);
    return el;
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
  function pct(p) { return `${(100 * p).toFixed(p >= 0.995 || p <= 0.005 ? 1 : 0)}%`; }
  function mib(n) { return `${(n / 1024 / 1024).toFixed(0)} MB`; }
  function track(url) { state.objectUrls.push(url); return url; }
  function releaseUrls() { state.objectUrls.forEach((u) => URL.revokeObjectURL(u)); state.objectUrls = []; }
  function showError(el, message) { el.textContent = message; el.hidden = false; }
  function hideError(el) { el.textContent = ""; el.hidden = true; }
  function base64ToBlob(b64, type) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Blob([bytes], { type });
  }

  async function api(path, options) {
    let res;
    try {
      res = await fetch(path, options);
    } catch (e) {
      throw new Error("Could not reach the server. Check your connection and try again.");
    }
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      const detail = body && (body.detail || body.error);
      const text = typeof detail === "string" ? detail : `the server answered ${res.status}`;
      const err = new Error(friendly(res.status, text));
      err.status = res.status;
      throw err;
    }
    return body;
  }

  function friendly(status, detail) {
    if (status === 413) return `This file is too large for the server: ${detail}.`;
    if (status === 415) return `This file type is not supported: ${detail}.`;
    if (status === 422) return `This file could not be read: ${detail}.`;
    if (status === 429) return "The server is busy right now. Please try again in a moment.";
    if (status === 503) return `The server cannot do this right now: ${detail}.`;
    if (status >= 500) return "Something went wrong on the server. Please try again.";
    return detail.charAt(0).toUpperCase() + detail.slice(1) + (detail.endsWith(".") ? "" : ".");
  }

  // ---- tabs ----------------------------------------------------------------------------------
  function selectTab(name) {
    for (const t of ["detect", "protect"]) {
      $(`tab-btn-${t}`).setAttribute("aria-selected", String(t === name));
      $(`tab-${t}`).hidden = t !== name;
    }
  }
  $("tab-btn-detect").addEventListener("click", () => selectTab("detect"));
  $("tab-btn-protect").addEventListener("click", () => selectTab("protect"));

  // ---- drop zones ----------------------------------------------------------------------------
  function wireDrop(zoneId, inputId, handler) {
    const zone = $(zoneId);
    const input = $(inputId);
    input.addEventListener("change", () => { if (input.files && input.files[0]) handler(input.files[0]); input.value = ""; });
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragover"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragover"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("dragover");
      const file = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
      if (file) handler(file);
    });
  }

  // ---- detection -----------------------------------------------------------------------------
  async function detectFile(file) {
    const token = ++state.detectToken;
    const errorEl = $("detect-error");
    hideError(errorEl);
    if (file.size > state.maxUpload) {
      showError(errorEl, `This file is ${mib(file.size)}; the server accepts up to ${mib(state.maxUpload)}.`);
      return;
    }
    releaseUrls();
    state.result = null;
    state.overlay = null;
    const isVideo = (file.type || "").startsWith("video/");
    const img = $("preview-img");
    const video = $("preview-video");
    state.original = track(URL.createObjectURL(file));
    img.hidden = isVideo;
    video.hidden = !isVideo;
    if (isVideo) { video.src = state.original; img.removeAttribute("src"); }
    else { img.src = state.original; video.removeAttribute("src"); }
    clear($("boxes"));
    $("heatmap-tools").hidden = true;
    $("heatmap-toggle").checked = false;
    $("heatmap-toggle").disabled = true;
    $("heatmap-report").hidden = true;
    $("chart-card").hidden = true;
    $("video-note").hidden = true;
    setVerdictPending();
    $("detect-result").hidden = false;
    provenanceFile(file, token);

    const form = new FormData();
    form.append("file", file, file.name || "upload");
    let result;
    try {
      result = await api("/v1/detect", { method: "POST", body: form });
    } catch (e) {
      if (token !== state.detectToken) return;
      $("detect-result").hidden = true;
      showError(errorEl, e.message);
      return;
    }
    if (token !== state.detectToken) return;
    state.result = result;
    renderVerdict(result);
    if (result.kind === "video") {
      // the server read the content as a video even if the browser did not say so
      if (!isVideo) { img.hidden = true; video.hidden = false; video.src = state.original; }
      renderChart(result);
    } else {
      if (isVideo) { video.hidden = true; img.hidden = false; img.src = state.original; }
      drawBoxes(result);
      if (result.faces.length) explainFile(file, token);
    }
  }

  // ---- provenance: C2PA credentials, invisible watermark, generator metadata ----------------
  const STRENGTH_TEXT = {
    "signed-valid": "signed, trusted",
    "signed-untrusted": "untrusted signer",
    "signed-invalid": "invalid credentials",
    "embedded": "embedded watermark",
    "metadata": "unsigned metadata",
  };
  const PROV_HEADLINE = {
    ai_declared: "Declared AI-generated by trusted content credentials",
    ai_indicated: "AI generation indicated (unverified: such evidence can be forged or copied)",
  };

  async function provenanceFile(file, token) {
    const panel = $("provenance");
    panel.hidden = false;
    panel.dataset.verdict = "pending";
    $("prov-headline").textContent = "Reading credentials and metadata…";
    clear($("prov-list"));
    clear($("prov-notes"));
    const form = new FormData();
    form.append("file", file, file.name || "upload");
    try {
      const p = await api("/v1/provenance", { method: "POST", body: form });
      if (token !== state.detectToken) return;
      renderProvenance(p);
    } catch (e) {
      if (token !== state.detectToken) return;
      $("prov-headline").textContent = `Provenance unavailable: ${e.message}`;
    }
  }

  function renderProvenance(p) {
    const panel = $("provenance");
    const verdict = (p.verdict && p.verdict.verdict) || "unknown";
    panel.dataset.verdict = verdict;
    $("prov-headline").textContent = PROV_HEADLINE[verdict] ||
      (p.evidence.length ? "No claim of AI generation found; the pixel verdict stands."
        : "No provenance evidence found; the pixel verdict stands.");
    const list = $("prov-list");
    clear(list);
    for (const e of p.evidence) {
      const li = document.createElement("li");
      const pill = document.createElement("span");
      pill.className = `pill strength ${e.strength}`;
      pill.textContent = STRENGTH_TEXT[e.strength] || e.strength;
      const claim = document.createElement("strong");
      claim.textContent = ` ${e.claim}`;
      const src = document.createElement("div");
      src.className = "muted small";
      src.textContent = `${e.kind} · ${e.source}`;
      li.append(pill, claim, src);
      const raw = Object.entries(e.raw || {}).filter(([, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length));
      if (raw.length) {
        const det = document.createElement("details");
        const sum = document.createElement("summary");
        sum.textContent = "details";
        const pre = document.createElement("pre");
        pre.textContent = raw.map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("\n");
        det.append(sum, pre);
        li.appendChild(det);
      }
      list.appendChild(li);
    }
    const notes = $("prov-notes");
    clear(notes);
    for (const n of p.notes || []) {
      const li = document.createElement("li");
      li.textContent = n;
      notes.appendChild(li);
    }
  }

  function setVerdictPending() {
    const v = $("verdict");
    v.dataset.label = "pending";
    $("verdict-label").textContent = "Analysing…";
    $("verdict-prob").textContent = "";
    $("verdict-note").textContent = "";
    $("verdict-limits").hidden = true;
    $("verdict-meter").hidden = true;
    clear($("face-list"));
    clear($("facts"));
  }

  function renderVerdict(r) {
    const v = $("verdict");
    v.dataset.label = r.label;
    const labelText = { fake: "Likely fake", real: "Likely real", uncertain: "Uncertain", no_face: "No face found" }[r.label] || r.label;
    $("verdict-label").textContent = labelText;
    // what the model was not trained on: shown with every verdict
    $("verdict-limits").textContent = r.limits ? `Limits: ${r.limits}` : "";
    $("verdict-limits").hidden = !r.limits;
    const band = r.uncertain_band;
    $("verdict-meter-band").hidden = !band;
    if (band) {
      $("verdict-meter-band").style.left = `${100 * band[0]}%`;
      $("verdict-meter-band").style.width = `${100 * (band[1] - band[0])}%`;
    }
    if (r.fake_probability === null || r.fake_probability === undefined) {
      $("verdict-prob").textContent = "";
      $("verdict-meter").hidden = true;
      $("verdict-note").textContent = r.kind === "video"
        ? "No face was found in the sampled frames. facetrust judges faces: try a clip where a face is clearly visible."
        : "No face was found. facetrust judges faces: try a photo where a face is clearly visible and not too small.";
    } else {
      $("verdict-prob").textContent = `${pct(r.fake_probability)} probability of a fake`;
      $("verdict-meter").hidden = false;
      $("verdict-meter-fill").style.left = `${100 * r.fake_probability}%`;
      $("verdict-meter-threshold").style.left = `${100 * r.threshold}%`;
      const n = r.faces.length;
      const which = r.kind === "video"
        ? `the most suspicious face track (${n} track${n === 1 ? "" : "s"})`
        : `the most suspicious face (${n} face${n === 1 ? "" : "s"})`;
      $("verdict-note").textContent = r.label === "uncertain"
        ? `Too close to the threshold (${pct(r.threshold)}) to call: between ${pct(band[0])} and ${pct(band[1])} neither label is reliable. Verdict of ${which}.`
        : `Verdict of ${which}; calibrated probability, threshold ${pct(r.threshold)}.`;
    }
    const list = $("face-list");
    clear(list);
    r.faces.forEach((f, i) => {
      const li = document.createElement("li");
      const pill = document.createElement("span");
      pill.className = `pill ${f.label}`;
      pill.textContent = f.label;
      const what = r.kind === "video" ? `Face track ${f.track_id !== undefined ? f.track_id + 1 : i + 1}` : `Face ${i + 1}`;
      const seen = r.kind === "video" && f.frames ? `, seen in ${f.frames.length} frame${f.frames.length === 1 ? "" : "s"}` : "";
      li.append(`${what}: `, pill, ` ${pct(f.fake_probability)}${seen}`);
      if (f.experts) {
        // fused models: each expert's own probability, before fusion and calibration
        const ex = document.createElement("div");
        ex.className = "experts";
        ex.textContent = "experts: " + Object.entries(f.experts).map(([k, v]) => `${k} ${pct(v)}`).join(" · ");
        li.appendChild(ex);
      }
      list.appendChild(li);
    });
    const facts = $("facts");
    clear(facts);
    const rows = [
      ["model", r.model],
      ["threshold", pct(r.threshold)],
      ["size", r.width && r.height ? `${r.width} × ${r.height}` : "–"],
      ["time", `${r.processing_time_s.toFixed(2)} s`],
    ];
    if (r.kind === "video") {
      rows.push(["frames", String(r.frames_analyzed)]);
      if (r.consistency !== null && r.consistency !== undefined) rows.push(["agreement", pct(r.consistency)]);
    }
    for (const [k, val] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = val;
      facts.append(dt, dd);
    }
  }

  function drawBoxes(r) {
    const layer = $("boxes");
    clear(layer);
    if (!r.width || !r.height) return;
    layer.setAttribute("viewBox", `0 0 ${r.width} ${r.height}`);
    const img = $("preview-img");
    const shown = img.clientWidth || r.width;
    const unit = r.width / shown; // viewBox units per screen pixel
    const font = 13 * unit;
    r.faces.forEach((f, i) => {
      const [x1, y1, x2, y2] = f.box;
      svg("rect", { x: x1, y: y1, width: x2 - x1, height: y2 - y1, rx: 4 * unit, class: `face-box ${f.label}`, "data-face": i }, layer);
      const text = `${i + 1} · ${f.label.toUpperCase()} ${pct(f.fake_probability)}`;
      const w = text.length * font * 0.62 + 8 * unit;
      const h = font + 8 * unit;
      const ty = y1 - h >= 0 ? y1 - h : y2;
      svg("rect", { x: x1, y: ty, width: w, height: h, rx: 3 * unit, class: `face-tag-bg ${f.label}` }, layer);
      const t = svg("text", { x: x1 + 4 * unit, y: ty + h - 5 * unit, class: "face-tag", "font-size": font }, layer);
      t.textContent = text;
    });
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (!state.result) return;
      if (state.result.kind === "image") drawBoxes(state.result);
      else renderChart(state.result);
    }, 100);
  });
  $("preview-video").addEventListener("error", () => {
    if (!$("preview-video").getAttribute("src")) return;
    $("video-note").hidden = false;
  });
  $("preview-img").addEventListener("load", () => { if (state.result && state.result.kind === "image") drawBoxes(state.result); });

  async function explainFile(file, token) {
    $("heatmap-tools").hidden = false;
    $("heatmap-status").textContent = "computing heatmap…";
    const form = new FormData();
    form.append("file", file, file.name || "upload");
    try {
      const ex = await api("/v1/explain", { method: "POST", body: form });
      if (token !== state.detectToken) return;
      state.overlay = track(URL.createObjectURL(base64ToBlob(ex.heatmap_png, "image/png")));
      $("heatmap-toggle").disabled = false;
      // the same PNG as `facetrust explain -o`: verdicts, colour bar, the model's limits
      if (ex.report_png) {
        $("heatmap-report").href = track(URL.createObjectURL(base64ToBlob(ex.report_png, "image/png")));
        $("heatmap-report").hidden = false;
      }
      const name = ex.method === "gradcam++" ? "Grad-CAM++" : "Grad-CAM";
      $("heatmap-status").textContent = ex.faces.every((f) => f.peak === null)
        ? `${name}: nothing in the face pushed the model towards "fake"`
        : `${name}: darker red = pushed the model more towards "fake"; faint when the model finds the face real`;
      if (ex.explains && ex.explains.startsWith("the CNN expert")) {
        $("heatmap-status").textContent += " (the CNN expert only; the other experts have no heatmap)";
      }
    } catch (e) {
      if (token !== state.detectToken) return;
      $("heatmap-status").textContent = `Heatmap unavailable: ${e.message}`;
    }
  }

  $("heatmap-toggle").addEventListener("change", (e) => {
    if (!state.overlay) return;
    $("preview-img").src = e.target.checked ? state.overlay : state.original;
  });

  function renderChart(r) {
    const chart = $("chart");
    clear(chart);
    const frames = r.frame_predictions || [];
    if (!frames.length) return;
    $("chart-card").hidden = false;
    // one viewBox unit per CSS pixel, so text stays readable from phone to desktop
    const W = Math.max(280, Math.round(chart.getBoundingClientRect().width) || 640);
    const H = 220, L = 44, R = 12, T = 12, B = 30;
    chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const tMax = Math.max(...frames.map((f) => f.time_s), 1e-6);
    const x = (t) => L + (W - L - R) * (t / tMax);
    const y = (p) => T + (H - T - B) * (1 - p);
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      svg("line", { x1: L, x2: W - R, y1: y(p), y2: y(p), class: "chart-grid" }, chart);
      const lab = svg("text", { x: L - 6, y: y(p) + 4, "text-anchor": "end", class: "chart-label" }, chart);
      lab.textContent = `${Math.round(p * 100)}%`;
    }
    svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "chart-axis" }, chart);
    svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "chart-axis" }, chart);
    svg("line", { x1: L, x2: W - R, y1: y(r.threshold), y2: y(r.threshold), class: "chart-threshold" }, chart);
    const xl = svg("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "chart-label" }, chart);
    xl.textContent = `time (s), 0 – ${tMax.toFixed(1)}`;
    const withFace = frames.filter((f) => f.fake_probability !== null);
    if (withFace.length > 1) {
      svg("polyline", { points: withFace.map((f) => `${x(f.time_s)},${y(f.fake_probability)}`).join(" "), class: "chart-line" }, chart);
    }
    for (const f of frames) {
      if (f.fake_probability === null) {
        svg("line", { x1: x(f.time_s), x2: x(f.time_s), y1: H - B - 6, y2: H - B, class: "chart-noface" }, chart);
      } else {
        const dot = svg("circle", { cx: x(f.time_s), cy: y(f.fake_probability), r: 4, class: `chart-dot ${f.label}` }, chart);
        const title = svg("title", {}, dot);
        title.textContent = `frame ${f.frame_index} at ${f.time_s.toFixed(2)} s: ${pct(f.fake_probability)} (${f.num_faces} face${f.num_faces === 1 ? "" : "s"})`;
      }
    }
  }

  // ---- protection ----------------------------------------------------------------------------
  async function protectFile(file) {
    const token = ++state.protectToken;
    const errorEl = $("protect-error");
    hideError(errorEl);
    $("protect-result").hidden = true;
    if (file.size > state.maxUpload) {
      showError(errorEl, `This file is ${mib(file.size)}; the server accepts up to ${mib(state.maxUpload)}.`);
      return;
    }
    const beforeUrl = URL.createObjectURL(file);
    $("before-img").src = beforeUrl;
    setProgress(0, "uploading…");
    $("protect-progress").hidden = false;
    const form = new FormData();
    form.append("file", file, file.name || "photo");
    const strength = encodeURIComponent($("strength").value);
    try {
      let job = await api(`/v1/protect?strength=${strength}`, { method: "POST", body: form });
      while (job.state === "queued" || job.state === "running") {
        setProgress(job.progress, job.state === "queued" ? "waiting in the queue…" : (job.message || "protecting…"));
        await new Promise((res) => setTimeout(res, 1000));
        if (token !== state.protectToken) return;
        job = await api(job.status_url);
      }
      if (job.state !== "done") throw new Error(`Protection failed: ${job.error || "unknown error"}.`);
      setProgress(1, "done");
      const result = await api(job.result_url);
      if (token !== state.protectToken) return;
      const blob = base64ToBlob(result.image, "image/png");
      const afterUrl = URL.createObjectURL(blob);
      $("after-img").src = afterUrl;
      const link = $("download");
      link.href = afterUrl;
      const stem = (file.name || "photo").replace(/\.[^.]*$/, "");
      link.download = `${stem}-protected.png`;
      renderReport(result.report || {});
      renderSummary(result.report || {});
      drawFaces(beforeUrl, afterUrl, result.report || {});
      $("protect-progress").hidden = true;
      $("protect-result").hidden = false;
    } catch (e) {
      if (token !== state.protectToken) return;
      $("protect-progress").hidden = true;
      showError(errorEl, e.message);
    }
  }

  function setProgress(fraction, message) {
    $("protect-bar").style.width = `${Math.round(100 * Math.max(0, Math.min(1, fraction)))}%`;
    $("protect-msg").textContent = message;
  }

  function renderReport(report) {
    const table = $("protect-report");
    clear(table);
    const rows = [];
    const walk = (obj, prefix) => {
      for (const [k, v] of Object.entries(obj)) {
        const key = prefix ? `${prefix}.${k}` : k;
        if (v !== null && typeof v === "object" && !Array.isArray(v)) walk(v, key);
        else if (typeof v === "number") rows.push([key, Number.isInteger(v) ? String(v) : v.toFixed(4)]);
        else if (typeof v === "string" || typeof v === "boolean") rows.push([key, String(v)]);
      }
    };
    walk(report, "");
    for (const [k, v] of rows.slice(0, 40)) {
      const tr = document.createElement("tr");
      const a = document.createElement("td");
      a.textContent = k;
      const b = document.createElement("td");
      b.textContent = v;
      tr.append(a, b);
      table.appendChild(tr);
    }
  }

  // The protect report in plain words: how visible the change is, and what dlib says.
  function renderSummary(r) {
    const box = $("protect-summary");
    clear(box);
    const line = (text, cls) => {
      const p = document.createElement("p");
      if (cls) p.className = cls;
      p.textContent = text;
      box.appendChild(p);
    };
    if (r.regions === "none") {
      line(r.message || "No face found: the photo is unchanged.");
      return;
    }
    const what = r.regions === "whole_image" ? "photo" : "face";
    if (typeof r.face_ssim === "number" && typeof r.face_psnr === "number") {
      line(`Visibility: ${r.visibility}.`, "summary-head");
      line(`On the ${what}: SSIM ${r.face_ssim.toFixed(3)}, PSNR ${r.face_psnr.toFixed(1)} dB ` +
        `(preset ${r.strength}: at least ${r.budget_ssim} and ${r.budget_psnr} dB).`);
    }
    if (r.judge && r.judge.jpeg75) {
      const d = r.judge.jpeg75.distance;
      const num = typeof d === "number" ? `distance ${d.toFixed(2)}; the same person below 0.60` : "no decision";
      line(`Protection against dlib after JPEG 75: ${r.judge.protection} (${num}).`, "summary-head");
      line(r.judge.message);
    } else if (r.judge_error) {
      line(`Protection against dlib was not measured: ${r.judge_error}.`);
    }
    if (typeof r.seconds === "number") line(`${r.message || ""} · ${r.seconds.toFixed(1)} s`, "muted");
  }

  // An enlarged crop of the first face, before and after, drawn pixel for pixel.
  function drawFaces(beforeUrl, afterUrl, r) {
    const wrap = $("face-compare");
    wrap.hidden = true;
    const box = (r.face_boxes || [])[0];
    if (!box) return;
    const [x1, y1, x2, y2] = box;
    const side = Math.max(x2 - x1, y2 - y1) * 1.3;
    const sx = Math.max(0, (x1 + x2) / 2 - side / 2);
    const sy = Math.max(0, (y1 + y2) / 2 - side / 2);
    const scale = Math.max(2, Math.min(4, Math.floor(320 / side)));
    const draw = (url, id) => new Promise((resolve) => {
      const img = new Image();
      img.onload = () => {
        const c = $(id);
        const s = Math.min(side, img.naturalWidth - sx, img.naturalHeight - sy);
        c.width = Math.round(s * scale);
        c.height = Math.round(s * scale);
        const ctx = c.getContext("2d");
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(img, sx, sy, s, s, 0, 0, c.width, c.height);
        resolve();
      };
      img.onerror = resolve;
      img.src = url;
    });
    Promise.all([draw(beforeUrl, "face-before"), draw(afterUrl, "face-after")]).then(() => {
      wrap.hidden = false;
    });
  }

  // ---- start ---------------------------------------------------------------------------------
  wireDrop("drop-detect", "file-input", detectFile);
  wireDrop("drop-protect", "protect-input", protectFile);

  api("/health").then((h) => {
    state.maxUpload = h.max_upload_bytes || state.maxUpload;
    $("server-info").textContent = ` · facetrust ${h.version}${h.model ? ` · model ${h.model}` : ""}${h.device ? ` on ${h.device}` : ""}`;
    const warn = $("server-warning");
    if (!h.model_loaded) {
      warn.textContent = "No detection model is loaded on this server, so photos cannot be checked yet. Ask the operator to set FACETRUST_MODEL.";
      warn.hidden = false;
    }
    if (!h.protect_available) {
      $("tab-protect").querySelector(".intro").textContent += " (Photo protection is not installed on this server yet.)";
    }
  }).catch(() => {
    const warn = $("server-warning");
    warn.textContent = "The server is not answering. Reload the page in a moment.";
    warn.hidden = false;
  });
})();
