//! `commsctl send --file request.json`: validate a send request here, then publish it exactly as
//! an upstream app would (exchange `comms.send`, routing key `send.<channel>`, confirmed).

use anyhow::{Context, bail};
use comms_domain::contract::{ValidSendRequest, canonical_bytes, parse_send_request};
use comms_runtime::amqp::{Outgoing, Publisher};
use comms_runtime::settings::Settings;
use comms_runtime::topology::Topology;

pub async fn run(settings: &Settings, file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let raw = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    // What the sender receives is the normalised copy: it must pass the same checks (its size).
    let checked =
        parse_send_request(&raw).and_then(|request| canonical_bytes(&request).map(|_| request));
    let request = match checked {
        Ok(request) => request,
        Err(errors) => {
            for e in errors.errors() {
                eprintln!("  {}: {}", e.field, e.problem);
            }
            bail!(
                "the request is invalid ({}); nothing was sent",
                errors.reason_code()
            );
        }
    };
    publish(settings, &request).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"published": true, "idempotency_key": request.idempotency_key})
        );
    } else {
        println!(
            "published {} on {}; follow it with: commsctl message {}",
            request.idempotency_key,
            request.routing_key(),
            request.idempotency_key
        );
    }
    Ok(())
}

/// Publishes a valid request on `comms.send` as an upstream app would (confirmed).
pub async fn publish(settings: &Settings, request: &ValidSendRequest) -> anyhow::Result<()> {
    let (connection, publisher, topology) = broker(settings).await?;
    let body = canonical_bytes(request).map_err(|errors| {
        anyhow::anyhow!(
            "the request is invalid ({}); nothing was sent",
            errors.reason_code()
        )
    })?;
    publisher
        .publish(Outgoing {
            exchange: &topology.send_exchange(),
            routing_key: request.routing_key(),
            body: &body,
            message_id: Some(request.idempotency_key.clone()),
            ..Outgoing::default()
        })
        .await
        .context("the broker did not accept the request")?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// A confirmed publisher on the fleet's topology (declared), for the commands that publish.
pub async fn broker(
    settings: &Settings,
) -> anyhow::Result<(lapin::Connection, Publisher, Topology)> {
    let topology = Topology::new(settings.amqp.namespace.clone());
    let connection = comms_runtime::amqp::connect(&settings.amqp, "commsctl")
        .await
        .context("cannot reach RabbitMQ (is it running? `make services`)")?;
    let publisher = Publisher::open(&connection).await?;
    topology.declare(publisher.channel()).await?;
    Ok((connection, publisher, topology))
}
