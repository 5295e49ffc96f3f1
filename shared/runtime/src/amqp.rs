//! Broker connections and the one way the fleet publishes.
//!
//! Every publish is persistent, `mandatory` and waits for the broker's confirm: a message the
//! broker could not route or refused (NACK) is an error the caller must handle, never a silent
//! loss. Callers ack their own input only after such a publish returned `Ok`.

use std::time::Duration;

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use secrecy::ExposeSecret;

use crate::settings::AmqpSettings;

/// Why a publish did not reach a queue.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused the message (NACK) on {exchange}/{routing_key}")]
    Nacked {
        exchange: String,
        routing_key: String,
    },
    #[error("no queue is bound for {exchange}/{routing_key}: the message was returned")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    #[error("broker did not confirm within {0:?}")]
    Timeout(Duration),
}

/// Connects to the broker named in the settings. The URL never appears in errors or logs.
/// The connection proposes `amqp.frame_max` unless the URL carries its own `frame_max`.
pub async fn connect(settings: &AmqpSettings, name: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let url = settings.url.expose_secret();
    match url.parse::<AMQPUri>() {
        Ok(mut uri) => {
            uri.query.frame_max = uri.query.frame_max.or(Some(settings.frame_max));
            Connection::connect_uri(uri, props).await
        }
        // lapin reports what is wrong with the URL (without echoing it).
        Err(_) => Connection::connect(url, props).await,
    }
}

/// A channel in confirm mode that publishes persistent, mandatory messages.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    confirm_timeout: Duration,
}

/// One message to publish.
#[derive(Debug, Clone, Default)]
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub headers: FieldTable,
    pub message_id: Option<String>,
    pub content_type: Option<&'a str>,
}

impl Publisher {
    /// Opens a confirm-mode channel on `connection`.
    pub async fn open(connection: &Connection) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            confirm_timeout: Duration::from_secs(10),
        })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// True while the channel can still publish.
    pub fn is_usable(&self) -> bool {
        self.channel.status().connected()
    }

    /// Publishes and waits for the broker to take responsibility for the message.
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<(), PublishError> {
        self.publish_in_order(vec![message]).await
    }

    /// Publishes `messages` in this order on the one channel (so a queue holds them in this
    /// order), then waits for every confirm together: one round trip to the broker for the lot
    /// instead of one per message. `Ok` only when the broker took responsibility for each; on
    /// the first failure the caller must assume none was taken (some may have been: the
    /// consumers dedupe).
    pub async fn publish_in_order(&self, messages: Vec<Outgoing<'_>>) -> Result<(), PublishError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            let mut properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_timestamp(now)
                .with_content_type(message.content_type.unwrap_or("application/json").into())
                .with_headers(message.headers);
            if let Some(id) = message.message_id {
                properties = properties.with_message_id(id.into());
            }
            let confirm = self
                .channel
                .basic_publish(
                    message.exchange.into(),
                    message.routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    message.body,
                    properties,
                )
                .await?;
            pending.push((confirm, message.exchange, message.routing_key));
        }
        let deadline = tokio::time::Instant::now() + self.confirm_timeout;
        for (confirm, exchange, routing_key) in pending {
            let confirmation = tokio::time::timeout_at(deadline, confirm)
                .await
                .map_err(|_| PublishError::Timeout(self.confirm_timeout))??;
            match confirmation {
                Confirmation::Ack(None) | Confirmation::NotRequested => {}
                Confirmation::Ack(Some(_returned)) => {
                    return Err(PublishError::Unroutable {
                        exchange: exchange.to_string(),
                        routing_key: routing_key.to_string(),
                    });
                }
                Confirmation::Nack(_) => {
                    return Err(PublishError::Nacked {
                        exchange: exchange.to_string(),
                        routing_key: routing_key.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Reads a header as text, whatever string-like AMQP type carried it.
pub fn header_str(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(&ShortString::from(key))? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Reads a header as an unsigned integer, whatever integer AMQP type carried it.
pub fn header_u32(headers: &FieldTable, key: &str) -> Option<u32> {
    let value = headers.inner().get(&ShortString::from(key))?;
    let n: i64 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    };
    u32::try_from(n).ok()
}
