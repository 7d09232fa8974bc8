// The annotation page: sign in with a token, answer one item at a time, keyboard or mouse.
// State for tests and people alike: <body data-state="signin|instructions|loading|ready|saving|done|paused">,
// and #task[data-ref] names the item on screen.
//
// Keys never mislead: a key is always the label printed on its button. Protocol B: S and D.
// Protocol A: when every choice is one character (digits 0-9, letters), the key is the choice
// itself (press 3 for "3"); otherwise letters a, b, c... in the order shown; beyond 26 choices,
// the choice's number typed out. The time from the images being on screen to the answer is
// sent with it (lead_time, in seconds).
"use strict";

const $ = (id) => document.getElementById(id);
const SECTIONS = ["signin", "instructions", "task", "done", "paused"];
const LETTERS = "abcdefghijklmnopqrstuvwxyz";
let current = null;   // the item on screen: {ref, protocol, question, candidates, images}
let keys = null;      // the key of each choice (lower case), or null: choices are typed as numbers
let busy = false;     // a request is in flight or images are loading: keys and clicks wait
let typed = "";       // digits typed so far (protocol A with more than 26 choices)
let shownAt = null;   // when the item's images were on screen (performance.now())
let pending = null;   // the item waiting behind the instructions screen

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (err) {
    throw new ApiError(0, "the server cannot be reached; your earlier answers are saved");
  }
  let data = {};
  try { data = await resp.json(); } catch (err) { /* not JSON */ }
  if (!resp.ok) throw new ApiError(resp.status, data.error || resp.statusText);
  return data;
}

function setState(state) { document.body.dataset.state = state; }

function show(section) {
  for (const id of SECTIONS) $(id).hidden = id !== section;
  $("progress").hidden = section !== "task" && section !== "done";
}

function keysFor(item) {
  const c = item.candidates;
  if (item.protocol === "B") return c.map((a) => (a === "same" ? "s" : "d"));
  const own = c.map((a) => a.trim().toLowerCase());
  if (own.every((a) => /^[a-z0-9]$/.test(a)) && new Set(own).size === own.length) return own;
  if (c.length <= LETTERS.length) return c.map((_, i) => LETTERS[i]);
  return null;
}

function keyLabel(i) {
  if (keys === null) return String(i + 1);
  return current.protocol === "B" || /^[a-z]$/.test(keys[i]) ? keys[i].toUpperCase() : keys[i];
}

function keysHint() {
  if (current.protocol === "B") return "Keys: S = same, D = different.";
  if (keys === null) return "Keys: type the number shown on a choice (Enter after a number that could go on; Esc clears).";
  return "Keys: the key printed on a choice.";
}

const INTRO = {
  A: "You will see one image rebuilt by an attack on a model's training, often blurred or noisy. " +
     "Pick what it shows from the choices below it. If you cannot tell, give your best guess.",
  B: "You will see a real image (left) beside an image rebuilt by an attack (right), often blurred " +
     "or noisy. Say whether the rebuilt one shows the same thing as the real one. If you cannot " +
     "tell, give your best guess.",
};

const introShown = new Set();  // this page's memory, where sessionStorage is blocked

function introSeen(item) {
  const key = `intro:${item.protocol}:${item.question}`;
  if (introShown.has(key)) return true;
  try { return sessionStorage.getItem(key) === "1"; } catch (err) { return false; }
}

function showInstructions(data) {
  pending = data;
  current = null;
  $("intro-question").textContent = data.item.question;
  $("intro-text").textContent = INTRO[data.item.protocol];
  $("intro-keys").textContent = data.item.protocol === "B"
    ? "Keys: S = same, D = different; or click a button."
    : "Keys: each choice shows the key that picks it; or click a button.";
  show("instructions");
  setState("instructions");
  $("intro-start").focus();
}

function startAfterInstructions() {
  if (!pending) return;
  const data = pending;
  pending = null;
  const key = `intro:${data.item.protocol}:${data.item.question}`;
  introShown.add(key);
  try { sessionStorage.setItem(key, "1"); } catch (err) { /* blocked: the page remembers it */ }
  render(data);
}

function renderProgress(p) {
  const total = p.answered + p.available;
  $("bar").max = Math.max(total, 1);
  $("bar").value = p.answered;
  $("progress-text").textContent =
    `You: ${p.answered} answered, ${p.available} to go · study: ${p.study_answers} of ${p.study_target} answers`;
}

function figure(src, caption, id) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.id = id;
  img.alt = caption;
  img.src = src;
  img.width = 256;
  img.height = 256;
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(img, cap);
  return { fig, img };
}

async function render(data) {
  $("who").hidden = false;
  $("annotator").textContent = data.annotator;
  renderProgress(data.progress);
  if (data.item && !introSeen(data.item)) { showInstructions(data); return; }
  current = data.item;
  keys = current ? keysFor(current) : null;
  shownAt = null;
  typed = "";
  $("typed").textContent = "";
  $("task-error").textContent = "";
  if (!current) {
    $("task").dataset.ref = "";
    show("done");
    setState("done");
    return;
  }
  setState("loading");
  $("task").dataset.ref = current.ref;
  $("task").dataset.protocol = current.protocol;
  $("question").textContent = current.question;
  const images = $("images");
  images.replaceChildren();
  const imgs = [];
  if (current.images.original) {
    const o = figure(current.images.original, "Original", "img-original");
    images.append(o.fig);
    imgs.push(o.img);
  }
  const r = figure(current.images.reconstruction, current.protocol === "B" ? "Reconstruction" : "Image",
                   "img-reconstruction");
  images.append(r.fig);
  imgs.push(r.img);

  const choices = $("choices");
  choices.replaceChildren();
  current.candidates.forEach((answer, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "choice";
    b.dataset.answer = answer;
    b.disabled = true;
    const k = document.createElement("kbd");
    k.textContent = keyLabel(i);
    b.append(k, document.createTextNode(answer));
    b.addEventListener("click", () => choose(answer));
    choices.append(b);
  });
  $("keys").textContent = keysHint();
  show("task");
  busy = true;
  await Promise.all(imgs.map((img) => img.decode().catch(() => {
    $("task-error").textContent = "An image did not load; reload the page.";
  })));
  busy = false;
  for (const b of choices.querySelectorAll("button")) b.disabled = false;
  shownAt = performance.now();
  setState("ready");
}

async function load() {
  setState("loading");
  try {
    await render(await api("GET", "/api/next"));
  } catch (err) {
    if (err.status === 401) { signInPage(""); return; }
    $("task-error").textContent = err.message;
    setState("error");
  }
}

async function choose(answer) {
  if (!current || busy) return;
  busy = true;
  setState("saving");
  for (const b of $("choices").querySelectorAll("button")) {
    b.disabled = true;
    if (b.dataset.answer === answer) b.classList.add("chosen");
  }
  const body = { ref: current.ref, answer };
  if (shownAt !== null) body.lead_time = Math.round(performance.now() - shownAt) / 1000;
  try {
    const data = await api("POST", "/api/answer", body);
    busy = false;
    await render(data);
  } catch (err) {
    busy = false;
    if (err.status === 401) { signInPage("Your token is no longer valid; ask the organiser."); return; }
    await load();
    $("task-error").textContent = `Not saved: ${err.message}`;
  }
}

function markTyped() {
  $("typed").textContent = typed ? `Typed: ${typed}` : "";
  const v = Number(typed);
  for (const [i, b] of Array.from($("choices").querySelectorAll("button")).entries()) {
    b.classList.toggle("typed", typed !== "" && i === v - 1);
  }
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
  if (pending && !$("instructions").hidden) {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); startAfterInstructions(); }
    return;
  }
  if (!current || busy || $("task").hidden) return;
  if (ev.target && (ev.target.tagName === "INPUT" || ev.target.tagName === "TEXTAREA")) return;
  const n = current.candidates.length;
  const key = ev.key;
  if (keys !== null) {
    const i = keys.indexOf(key.toLowerCase());
    if (key.length === 1 && i >= 0) { ev.preventDefault(); choose(current.candidates[i]); }
    return;
  }
  if (/^[0-9]$/.test(key)) {
    ev.preventDefault();
    typed += key;
    const v = Number(typed);
    if (v < 1 || v > n) { typed = ""; markTyped(); return; }
    if (v * 10 > n) { typed = ""; markTyped(); choose(current.candidates[v - 1]); return; }
    markTyped();
  } else if (key === "Enter" && typed) {
    ev.preventDefault();
    const v = Number(typed);
    typed = "";
    markTyped();
    if (v >= 1 && v <= n) choose(current.candidates[v - 1]);
  } else if (key === "Escape" || key === "Backspace") {
    typed = "";
    markTyped();
  }
}

function signInPage(message) {
  current = null;
  pending = null;
  $("who").hidden = true;
  show("signin");
  setState("signin");
  $("signin-error").textContent = message;
  $("token").focus();
}

async function signIn(token) {
  try {
    await api("POST", "/api/session", { token });
    $("token").value = "";
    $("signin-error").textContent = "";
    await load();
  } catch (err) {
    signInPage(err.status === 401 ? "Unknown token: check it or ask the organiser." : err.message);
  }
}

async function signOut() {
  try { await api("DELETE", "/api/session"); } catch (err) { /* the cookie goes anyway when it expires */ }
  current = null;
  $("who").hidden = true;
  show("paused");
  setState("paused");
}

document.addEventListener("DOMContentLoaded", () => {
  document.addEventListener("keydown", onKey);
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token);
  });
  $("signout").addEventListener("click", signOut);
  $("again").addEventListener("click", () => signInPage(""));
  $("intro-start").addEventListener("click", startAfterInstructions);
  // A link of the form /#token=... signs in once; the fragment never reaches the server's logs.
  const match = /^#token=([A-Za-z0-9_-]{16,128})$/.exec(window.location.hash);
  if (match) {
    history.replaceState(null, "", window.location.pathname);
    signIn(match[1]);
  } else {
    start();
  }
});

async function start() {
  try {
    const who = await api("GET", "/api/session");
    if (who.annotator) await load();
    else signInPage("");
  } catch (err) {
    signInPage(err.message);
  }
}
