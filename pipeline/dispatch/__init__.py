"""citypatrol.pipeline.dispatch: the closed loop with the 数字城管 dispatch system — the message a
case becomes, the adapters (HTTP JSON, MQTT, file drop), the dispatcher over the outbox, signed
status callbacks, handling deadlines and the loopback simulator. Imports store, cases, config.
"""
