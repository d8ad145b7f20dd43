/**
 * `serial-doorbell`: the reference serial device with a doorbell on its I/O BAR (the scratch
 * register, offset 7), so that one device holds every per-device kernel object a KVM session
 * makes: a BAR claim, an ioeventfd doorbell, and — once the guest enables MSI — an MSI route
 * (eventfd + irqfd + GSI routing entry).
 */
import type { DeviceContext, DeviceDefinition, DeviceModel } from '@vmed/core';
import { serialDevice, uart } from '@vmed/devices';

/** Rings seen by every instance (the model is the serial model itself). */
export const doorbellRings = { count: 0 };

export const doorbellSerialDevice: DeviceDefinition<Record<string, never>> = {
  type: 'serial-doorbell',
  description: 'serial with a doorbell on its scratch register (leak tests)',
  maxInstances: 4,
  create(context: DeviceContext): DeviceModel {
    const model = serialDevice.create(context, {});
    context.doorbell({ bar: 0, offset: uart.UART_SCR, length: 1 }, (count) => {
      doorbellRings.count += count;
    });
    return model;
  },
};
