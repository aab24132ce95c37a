// The account's jobs, newest first: status, progress while processing, a video
// player and download for completed ones, the error in words for failed ones,
// cancel and delete. Jobs in processing are polled every 2 s (API.md "Progress").

import { call } from "./api.js";
import { $, confirmAction, el, guarded, when } from "./dom.js";

const POLL_MS = 2000;
export const JOB_ENDED = "lipsync:job-ended";
const MODEL_NAMES = {
  "lipsync-image": "Portrait + audio",
  "lipsync-video": "Video + audio",
  "lipsync-image-multi": "Two people",
};
// id -> {job, node, shape}; `shape` changes only when the card must be rebuilt,
// so a playing <video> is not replaced by a refresh.
const cards = new Map();
let order = [];
let cursor = null;
let timer = null;
// Counts the list's redraws, so that tests can tell a refresh has landed.
let renders = 0;

const section = () => $("#jobs");
const short = (id) => id.slice(0, 8);

function progressText(progress) {
  if (!progress) return "queued";
  const eta = progress.etaSeconds === null ? "" : `, about ${progress.etaSeconds} s left`;
  return `${progress.stage}, ${progress.percent} %${eta}`;
}

function body(job) {
  const parts = [];
  if (job.status === "processing") {
    parts.push(
      el("progress", {
        max: 100,
        value: job.progress?.percent ?? 0,
        "aria-label": `Progress of job ${short(job.id)}`,
      }),
      el("p", { class: "progress-text", text: progressText(job.progress) }),
      el("button", {
        type: "button",
        text: "Cancel",
        "aria-label": `Cancel job ${short(job.id)}`,
        onclick: () => cancel(job),
      }),
    );
    return parts;
  }
  if (job.status === "failed") {
    parts.push(el("p", { class: "error job-error", text: `Failed: ${job.error || "no reason given"}` }));
  } else if (job.status === "canceled") {
    parts.push(el("p", { text: "Canceled; nothing was charged." }));
  } else if (job.deletedAt) {
    parts.push(el("p", { text: `Deleted ${when(job.deletedAt)}; its video is gone.` }));
  } else if (job.output) {
    parts.push(
      el("video", {
        controls: true,
        preload: "metadata",
        src: job.output,
        "aria-label": `Video of job ${short(job.id)}`,
      }),
      el("a", {
        href: job.output,
        download: `${job.id}.mp4`,
        text: "Download",
        "aria-label": `Download the video of job ${short(job.id)}`,
      }),
    );
  } else {
    parts.push(el("p", { text: "The video has expired." }));
  }
  if (job.status === "completed" && job.credits !== null) {
    parts.push(el("p", { class: "hint", text: `${job.credits} credits, ${job.executionTime} ms` }));
  }
  if (!job.deletedAt) {
    parts.push(
      el("button", {
        type: "button",
        text: "Delete",
        "aria-label": `Delete job ${short(job.id)}`,
        onclick: () => remove(job),
      }),
    );
  }
  return parts;
}

function shapeOf(job) {
  return [job.status, job.output ?? "", job.deletedAt ?? ""].join("|");
}

function render(job) {
  const shape = shapeOf(job);
  let card = cards.get(job.id);
  if (!card) {
    card = { node: el("li", { class: "job", "data-job-id": job.id }), shape: "" };
    cards.set(job.id, card);
  }
  card.job = job;
  if (card.shape === shape && job.status === "processing") {
    // Same card: move the bar and its words only.
    $("progress", card.node).value = job.progress?.percent ?? 0;
    $(".progress-text", card.node).textContent = progressText(job.progress);
    return card.node;
  }
  if (card.shape !== shape) {
    card.shape = shape;
    card.node.replaceChildren(
      el(
        "div",
        { class: "job-head" },
        el("strong", { text: MODEL_NAMES[job.model] ?? job.model }),
        el("span", { class: `status status-${job.status}`, text: job.status }),
        el("span", { class: "hint", text: `${short(job.id)} · ${when(job.createdAt)}` }),
      ),
      ...body(job),
    );
  }
  return card.node;
}

function show() {
  $("#job-list").replaceChildren(...order.map((id) => render(cards.get(id).job)));
  $("#no-jobs").hidden = order.length > 0;
  $("#more-jobs").hidden = !cursor;
  $("#job-list").dataset.renders = String(++renders);
  schedule();
}

function schedule() {
  clearTimeout(timer);
  const busy = order.some((id) => cards.get(id).job.status === "processing");
  if (busy) timer = setTimeout(poll, POLL_MS);
}

async function poll() {
  const busy = order.filter((id) => cards.get(id).job.status === "processing");
  await guarded(section(), async () => {
    for (const id of busy) {
      const job = await call("GET", `/api/v1/jobs/${encodeURIComponent(id)}`);
      render(job);
      // Its charge (or release) changes the balance: app.js reads it again.
      if (job.status !== "processing") document.dispatchEvent(new CustomEvent(JOB_ENDED));
    }
  });
  if (timer !== null) schedule();
}

export async function loadJobs({ more = false } = {}) {
  await guarded(section(), async () => {
    const query = new URLSearchParams({ limit: "20" });
    if (more && cursor) query.set("cursor", cursor);
    const page = await call("GET", `/api/v1/jobs?${query}`);
    if (!more) order = [];
    for (const job of page.data) {
      if (!order.includes(job.id)) order.push(job.id);
      const card = cards.get(job.id);
      if (card) card.job = job;
      else render(job);
    }
    cursor = page.next_cursor;
    show();
  });
}

// A job just created by the form: shown first and watched.
export function watchJob(job) {
  order = [job.id, ...order.filter((id) => id !== job.id)];
  render(job);
  show();
}

async function cancel(job) {
  await guarded(section(), async () => {
    render(await call("POST", `/api/v1/jobs/${encodeURIComponent(job.id)}/cancel`));
    document.dispatchEvent(new CustomEvent(JOB_ENDED));
  });
  show();
}

async function remove(job) {
  const sure = await confirmAction(
    `Delete job ${short(job.id)}? Its video is deleted for good.`,
    "Delete job",
  );
  if (!sure) return;
  await guarded(section(), async () => {
    await call("DELETE", `/api/v1/jobs/${encodeURIComponent(job.id)}`);
    render(await call("GET", `/api/v1/jobs/${encodeURIComponent(job.id)}`));
  });
  show();
}

export function setupJobs() {
  $("#refresh-jobs").addEventListener("click", () => loadJobs());
  $("#more-jobs").addEventListener("click", () => loadJobs({ more: true }));
}

export function forgetJobs() {
  clearTimeout(timer);
  timer = null;
  cards.clear();
  order = [];
  cursor = null;
  $("#job-list").replaceChildren();
}
