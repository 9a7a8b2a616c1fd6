// "Pin to logbook": the focus view's version on screen kept for good, with a comment, in its
// experiment's logbook (POST api/logbook). The exact version shown is pinned, never a newer one
// that arrived meanwhile: the service answers 404 when it is no longer kept.

import { postJson } from './api.js';
import { EntryDialog } from './entry-dialog.js';
import { logbookHref, serviceUrl } from './urls.js';

const DIGEST = /^[0-9a-f]{64}$/;

export class PinDialog {
  #dialog;

  /** `dialog`: the <dialog> of the form EntryDialog describes. */
  constructor(dialog) {
    this.#dialog = new EntryDialog(dialog);
  }

  /**
   * Ask for a comment on update `seq` of `topic` (of `experiment`), then pin it; `digest`, the
   * SHA-256 of the image shown, makes sure the service pins that very image.
   */
  open({ topic, experiment, seq, digest }) {
    return this.#dialog.open({
      what: `Update #${seq} of ${topic}, as shown, into the logbook of ${experiment}.`,
      refused: 'Not pinned',
      send: (comment, author) =>
        postJson(serviceUrl('api/logbook'), {
          topic,
          seq,
          digest: DIGEST.test(digest) ? digest : null,
          comment,
          author,
        }),
      done: (entry) => {
        const link = document.createElement('a');
        link.href = logbookHref(entry.experiment, { entry: entry.id });
        link.textContent = 'Open the entry';
        link.dataset.entry = entry.id;
        return [`Pinned #${entry.seq} to the logbook of ${entry.experiment}. `, link];
      },
    });
  }
}
