//! The broker's own end-to-end limit on this machine: persistent messages of the fleet's size,
//! published with confirms to a quorum queue and consumed with manual acks, no other work.

use std::time::Instant;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};

/// Messages per second through publish → quorum queue → consume → ack.
pub async fn run(
    connection: &Connection,
    queue: &str,
    count: usize,
    body: &[u8],
) -> anyhow::Result<f64> {
    let setup = connection.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    setup.queue_declare(queue.into(), durable, args).await?;

    let consumer_channel = connection.create_channel().await?;
    consumer_channel
        .basic_qos(256, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let publisher = connection.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let started = Instant::now();
    let publish = async {
        // Confirms are awaited in windows, as a well-written publisher does.
        let mut pending = Vec::with_capacity(512);
        for _ in 0..count {
            let confirm = publisher
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?;
            pending.push(confirm);
            if pending.len() == 512 {
                for c in pending.drain(..) {
                    c.await?;
                }
            }
        }
        for c in pending {
            c.await?;
        }
        anyhow::Ok(())
    };
    let consume = async {
        let mut seen = 0;
        while seen < count {
            let Some(delivery) = consumer.next().await else {
                break;
            };
            delivery?.acker.ack(BasicAckOptions::default()).await?;
            seen += 1;
        }
        anyhow::Ok(())
    };
    let (published, consumed) = tokio::join!(publish, consume);
    published?;
    consumed?;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    setup
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    Ok(rate)
}
