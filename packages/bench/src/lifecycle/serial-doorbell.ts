/**
 * The device the lifecycle benchmark creates and removes: the reference 16550 serial model
 * with one doorbell on its I/O BAR (at the scratch register), so a cycle holds the kernel
 * objects a real mediated device does: one ioeventfd and, once the guest enables MSI, one
 * MSI route (eventfd, GSI routing entry, irqfd).
 */
import type { DeviceDefinition } from '@vmed/core';
import { serialDevice, uart, type SerialOptions } from '@vmed/devices';

export const SERIAL_DOORBELL_TYPE = 'serial-doorbell';

/** Counts rings; the lifecycle benchmark never rings it. */
export const doorbellRings = { count: 0 };

export const serialWithDoorbell: DeviceDefinition<SerialOptions> = {
  type: SERIAL_DOORBELL_TYPE,
  description: 'the serial model with one doorbell on its I/O BAR',
  maxInstances: 1,
  create(context, options) {
    const model = serialDevice.create(context, options);
    context.doorbell({ bar: 0, offset: uart.UART_SCR, length: 1 }, (count) => {
      doorbellRings.count += count;
    });
    return model;
  },
};
