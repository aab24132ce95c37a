// The "new job" form: the chosen files are uploaded first (POST /api/v1/uploads),
// then the job is created from their URLs and watched in the jobs list.

import { call } from "./api.js";
import { $, guarded } from "./dom.js";
import { watchJob } from "./jobs.js";

// The file fields of each mode, in the order they are uploaded.
const FILES = {
  "lipsync-image": ["image", "audio"],
  "lipsync-video": ["video", "audio"],
  "lipsync-image-multi": ["image", "left_audio", "right_audio"],
};

function showMode(form) {
  const mode = form.mode.value;
  for (const group of form.querySelectorAll("[data-modes]")) {
    const active = group.dataset.modes.split(" ").includes(mode);
    group.hidden = !active;
    for (const input of group.querySelectorAll("input, select")) input.disabled = !active;
  }
}

async function upload(file, field, status) {
  status.textContent = `Uploading ${file.name}...`;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    return await call("POST", "/api/v1/uploads", { form });
  } catch (error) {
    error.message = `${file.name} (${field.replace("_", " ")}): ${error.message}`;
    throw error;
  }
}

export function setupNewJob() {
  const form = $("#job-form");
  const status = $("#job-form-status");
  form.mode.addEventListener("change", () => showMode(form));
  showMode(form);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    guarded(form, async () => {
      const mode = form.mode.value;
      const missing = FILES[mode].filter((field) => !form[field].files.length);
      if (missing.length) {
        throw new Error(`Choose a file for: ${missing.map((f) => f.replace("_", " ")).join(", ")}.`);
      }
      const formState = { resolution: form.resolution.value };
      for (const field of FILES[mode]) {
        formState[field] = (await upload(form[field].files[0], field, status)).url;
      }
      if (mode === "lipsync-image-multi") formState.order = form.order.value;
      if (form.prompt.value.trim()) formState.prompt = form.prompt.value.trim();
      if (form.seed.value !== "") formState.seed = Number(form.seed.value);
      status.textContent = "Starting the job...";
      const created = await call("POST", `/api/v1/${mode}`, { body: { formState } });
      watchJob({ progress: null, output: null, error: "", deletedAt: null, model: mode, ...created });
      status.textContent = `Job ${created.id.slice(0, 8)} started; it is shown under Jobs.`;
    }).finally(() => {
      button.disabled = false;
      if (form.querySelector("[data-error]").textContent) status.textContent = "";
    });
  });
}
