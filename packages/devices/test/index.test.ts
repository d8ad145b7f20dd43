import { describe, expect, it } from 'vitest';
import * as devices from '../src/index.js';

describe('package exports', () => {
  it('lists every device type once under deviceTypes, as the mediator imports it', () => {
    const names = devices.deviceTypes.map((t) => t.type);
    expect(names).toEqual(['serial', 'edu', 'framebuffer']);
    expect(devices.deviceTypes).toContain(devices.serialDevice);
    expect(devices.deviceTypes).toContain(devices.eduDevice);
    expect(devices.deviceTypes).toContain(devices.framebufferDevice);
    for (const t of devices.deviceTypes) {
      expect(t.description.length, t.type).toBeGreaterThan(0);
      expect(Number.isInteger(t.maxInstances) && t.maxInstances > 0, t.type).toBe(true);
    }
  });
});
